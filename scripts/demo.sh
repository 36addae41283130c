#!/usr/bin/env bash
# The README's demo: start the lab platform, enroll a device against it, show the files and what
# openssl says about them, stop the lab. Everything lives in a temporary directory, removed at the end.
set -euo pipefail
cd "$(dirname "$0")/.."
cr() { node bin/cert-retriever.mjs "$@"; }

work=$(mktemp -d)
lab_pid=
cleanup() {
  [ -n "$lab_pid" ] && kill "$lab_pid" 2>/dev/null && wait "$lab_pid" 2>/dev/null
  rm -rf "$work"
}
trap cleanup EXIT

# The lab's admin password: random, handed over in the environment and on stdin, never on argv.
CERT_RETRIEVER_LAB_PASSWORD=$(od -An -N12 -tx1 /dev/urandom | tr -d ' \n')
export CERT_RETRIEVER_LAB_PASSWORD

echo "== 1. start the lab platform (dojot EJBCA-REST look-alike) on 127.0.0.1"
cr lab serve --dir "$work/lab" --listen 127.0.0.1:0 >"$work/url" 2>"$work/lab.log" &
lab_pid=$!
for _ in $(seq 1 100); do [ -s "$work/url" ] && break; sleep 0.1; done
url=$(head -n 1 "$work/url")
[ -n "$url" ] || { cat "$work/lab.log"; echo "the lab did not start" >&2; exit 1; }
echo "lab listening at $url"

echo
echo "== 2. register the device on the platform"
cr lab device add --dir "$work/lab" demo-device

echo
echo "== 3. enroll it"
printf '%s' "$CERT_RETRIEVER_LAB_PASSWORD" |
  cr enroll --platform "$url" --device-id demo-device --username admin --password-stdin \
    --dns demo-device.local --out "$work/certs"

echo
echo "== 4. the files"
ls -la "$work/certs"

echo
echo "== 5. what openssl says"
openssl verify -CAfile "$work/certs/IOTmidCA.crt" "$work/certs/demo-device.crt"
openssl x509 -in "$work/certs/demo-device.crt" -noout -subject -issuer -dates -ext subjectAltName
if [ "$(openssl pkey -in "$work/certs/demo-device.key" -pubout)" = "$(openssl x509 -in "$work/certs/demo-device.crt" -noout -pubkey)" ]; then
  echo "the key's public key is the certificate's: OK"
else
  echo "the key does not match the certificate" >&2
  exit 1
fi
openssl x509 -in "$work/certs/demo-device.crt" -noout -checkend 0

echo
echo "== 6. stop the lab"
kill "$lab_pid" && wait "$lab_pid" || true
lab_pid=
echo "lab stopped; demo done"
