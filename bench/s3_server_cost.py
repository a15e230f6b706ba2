#!/usr/bin/env python3
"""What the S3 server itself spends per GiB written, by upload shape: single PUTs against
multipart uploads of 8 MiB parts (8 + 8 + 0.3 MiB for a pack) and of two equal parts (drplan's
shape for its packs since 2026-12-06), each with and without
x-amz-checksum-sha256. The server shares the machine's cores with the client in
bench/engines.py --s3, so its CPU per byte is part of every client's wall time there.

usage: eval "$(bash .ci/s3.sh start /tmp/drplan-s3)"; python3 bench/s3_server_cost.py [--objects 24]

Reads the server's CPU time from /proc/$DRPLAN_S3_SERVER_PID (set by .ci/s3.sh); boto3 sends
the requests, four at a time. Prints a table; writes nothing.
"""
import argparse
import os
import sys
import time
from concurrent.futures import ThreadPoolExecutor

from engines import cpu_seconds, s3_client


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--objects", type=int, default=24)
    a = ap.parse_args()
    e = os.environ
    if "DRPLAN_S3_SERVER_PID" not in e:
        sys.exit('needs the S3 server of .ci/s3.sh: eval "$(bash .ci/s3.sh start /tmp/drplan-s3)"')
    pid, bucket = e["DRPLAN_S3_SERVER_PID"], e["DRPLAN_S3_BUCKET"]
    s3 = s3_client()
    size = (16 << 20) + (300 << 10)   # a pack: just over 16 MiB
    data = [os.urandom(size) for _ in range(4)]
    stamp = str(int(time.time()))

    def single(i, checksum):
        extra = {"ChecksumAlgorithm": "SHA256"} if checksum else {}
        s3.put_object(Bucket=bucket, Key=f"server-cost-{stamp}/single-{checksum}-{i}", Body=data[i % 4], **extra)

    def multipart(part):
        return lambda i, checksum: multipart_of(i, checksum, part)

    def multipart_of(i, checksum, part):
        key, extra = f"server-cost-{stamp}/multi-{part}-{checksum}-{i}", ({"ChecksumAlgorithm": "SHA256"} if checksum else {})
        upload = s3.create_multipart_upload(Bucket=bucket, Key=key, **extra)["UploadId"]
        parts, body = [], data[i % 4]
        for n, off in enumerate(range(0, len(body), part)):
            r = s3.upload_part(Bucket=bucket, Key=key, UploadId=upload, PartNumber=n + 1, Body=body[off:off + part], **extra)
            parts.append({"PartNumber": n + 1, "ETag": r["ETag"], **({"ChecksumSHA256": r["ChecksumSHA256"]} if checksum else {})})
        s3.complete_multipart_upload(Bucket=bucket, Key=key, UploadId=upload, MultipartUpload={"Parts": parts})

    print(f"| upload | checksum | objects | wall | server CPU | server CPU per GiB |\n|---|---|---:|---:|---:|---:|")
    gib = a.objects * size / 2**30
    shapes = [("single PUT", single), ("multipart, 8 MiB parts", multipart(8 << 20)),
              ("multipart, 2 equal parts", multipart((size + 1) // 2))]
    for name, fn in shapes:
        for checksum in [False, True]:
            c0, t0 = cpu_seconds(pid), time.time()
            with ThreadPoolExecutor(4) as pool:
                list(pool.map(lambda i: fn(i, checksum), range(a.objects)))
            spent = cpu_seconds(pid) - c0
            print(f"| {name} | {'x-amz-checksum-sha256' if checksum else 'none'} | {a.objects} × {size / 2**20:.1f} MiB | "
                  f"{time.time() - t0:.1f} s | {spent:.1f} s | {spent / gib:.1f} s |", flush=True)


if __name__ == "__main__":
    main()
