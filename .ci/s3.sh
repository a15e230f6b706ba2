#!/usr/bin/env bash
# Starts moto's S3 server on a free loopback port for the S3 tests, and prints the environment
# they read. Usage: eval "$(bash .ci/s3.sh start DIR)"; later bash .ci/s3.sh stop DIR.
# moto is an emulator: with INITIAL_NO_AUTH_ACTION_COUNT=3 it answers three calls without
# authentication, which create an IAM user, its access key and an allow-all policy; from then
# on it verifies every request's SigV4 signature, so a wrong secret gets SignatureDoesNotMatch.
set -euo pipefail
cmd="$1"; dir="$2"
case "$cmd" in
  start)
    mkdir -p "$dir"
    port="$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
    INITIAL_NO_AUTH_ACTION_COUNT=3 nohup python3 -m moto.server -H 127.0.0.1 -p "$port" >"$dir/moto.log" 2>&1 &
    echo $! > "$dir/pid"
    for _ in $(seq 1 100); do
      if python3 -c "import socket; socket.create_connection(('127.0.0.1', $port), 0.2)" 2>/dev/null; then break; fi
      sleep 0.1
    done
    # The server's pid, for bench/engines.py to read its CPU time from /proc.
    echo "export DRPLAN_S3_SERVER_PID=$(cat "$dir/pid")"
    python3 - "$port" "$dir" <<'PY'
import json, sys, boto3
port, out = sys.argv[1], sys.argv[2]
url = f"http://127.0.0.1:{port}"
iam = boto3.client("iam", endpoint_url=url, region_name="us-east-1", aws_access_key_id="bootstrap", aws_secret_access_key="bootstrap")
iam.create_user(UserName="drplan")
key = iam.create_access_key(UserName="drplan")["AccessKey"]
iam.put_user_policy(UserName="drplan", PolicyName="all", PolicyDocument=json.dumps(
    {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]}))
# A second user that may read but not write: the "denied request" test's credentials.
# AWS checks HeadObject against s3:GetObject and ListObjectsV2 against s3:ListBucket; moto
# 5.2.6 checks the operation's own name instead, so both spellings are granted. Without them
# the read-only user's HEAD is refused (403) before the PUT the test means to see denied.
iam = boto3.client("iam", endpoint_url=url, region_name="us-east-1", aws_access_key_id=key["AccessKeyId"], aws_secret_access_key=key["SecretAccessKey"])
iam.create_user(UserName="drplan-readonly")
readonly = iam.create_access_key(UserName="drplan-readonly")["AccessKey"]
iam.put_user_policy(UserName="drplan-readonly", PolicyName="read", PolicyDocument=json.dumps(
    {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": ["s3:GetObject", "s3:ListBucket", "s3:HeadObject", "s3:ListObjectsV2", "s3:HeadBucket"], "Resource": "*"}]}))
s3 = boto3.client("s3", endpoint_url=url, region_name="us-east-1", aws_access_key_id=key["AccessKeyId"], aws_secret_access_key=key["SecretAccessKey"])
s3.create_bucket(Bucket="drplan-test")
# Object Lock can only be enabled when a bucket is created (it turns versioning on for good).
s3.create_bucket(Bucket="drplan-locked", ObjectLockEnabledForBucket=True)
print(f"export DRPLAN_S3_ENDPOINT={url}")
print(f"export DRPLAN_S3_BUCKET=drplan-test")
print(f"export DRPLAN_S3_LOCKED_BUCKET=drplan-locked")
print(f"export DRPLAN_S3_ACCESS_KEY_ID={key['AccessKeyId']}")
print(f"export DRPLAN_S3_SECRET_ACCESS_KEY={key['SecretAccessKey']}")
print(f"export DRPLAN_S3_READONLY_ACCESS_KEY_ID={readonly['AccessKeyId']}")
print(f"export DRPLAN_S3_READONLY_SECRET_ACCESS_KEY={readonly['SecretAccessKey']}")
PY
    ;;
  stop)
    if [ -f "$dir/pid" ]; then kill "$(cat "$dir/pid")" 2>/dev/null || true; fi
    rm -rf "$dir"
    ;;
esac
