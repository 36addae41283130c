#!/usr/bin/env bash
# The README's demo: start the lab platform, enroll a device against it, show the files and what
# openssl says about them, stop the lab. Everything lives in a temporary directory (under $TMPDIR),
# removed at the end; the lab is stopped however the demo ends (success, a failed step, Ctrl-C).
set -euo pipefail
cd "$(dirname "$0")/.."

# Build only when the build is missing or what it is built from changed (`npm ci` has just built it
# through `postprepare`; scripts/up-to-date.mjs compares a hash of the sources). CERT_RETRIEVER_DEMO_BUILD=no
# skips the check (the tests use it, so a source file edited during a test run does not rebuild
# dist/ under the other tests).
stale() { ! node scripts/up-to-date.mjs 2>/dev/null; }
if [ "${CERT_RETRIEVER_DEMO_BUILD:-auto}" != no ] && stale; then
  echo "== 0. build (dist/ is missing or older than its sources)"
  npm run build
  echo
fi

# Foreground steps only: a function run in the background would be a subshell, whose pid ($!)
# is not node's, and killing it would leave node serving.
cr() { node bin/cert-retriever.mjs "$@"; }
# The lab platform is a package of its own in this repository (lab/), `npx cert-retriever-lab`.
lab() { node lab/bin/cert-retriever-lab.mjs "$@"; }

work=$(mktemp -d)
lab_pid=
stop_lab() {
  [ -n "$lab_pid" ] || return 0
  kill "$lab_pid" 2>/dev/null || true
  # It stops on SIGTERM within a moment; one that does not is killed after 5 s.
  for _ in $(seq 1 50); do kill -0 "$lab_pid" 2>/dev/null || break; sleep 0.1; done
  kill -KILL "$lab_pid" 2>/dev/null || true
  wait "$lab_pid" 2>/dev/null || true
  lab_pid=
}
cleanup() {
  local status=$?
  stop_lab
  rm -rf "$work"
  exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# The lab's admin password: random, handed over in the environment and on stdin, never on argv.
CERT_RETRIEVER_LAB_PASSWORD=$(od -An -N12 -tx1 /dev/urandom | tr -d ' \n')
export CERT_RETRIEVER_LAB_PASSWORD

echo "== 1. start the lab platform (dojot EJBCA-REST look-alike) on 127.0.0.1"
# node itself in the background (not `lab`), so that $! is the server's pid.
node lab/bin/cert-retriever-lab.mjs serve --dir "$work/lab" --listen 127.0.0.1:0 >"$work/url" 2>"$work/lab.log" &
lab_pid=$!
for _ in $(seq 1 100); do [ -s "$work/url" ] && break; sleep 0.1; done
url=$(head -n 1 "$work/url")
[ -n "$url" ] || { cat "$work/lab.log"; echo "the lab did not start" >&2; exit 1; }
echo "lab listening at $url"

echo
echo "== 2. register the device on the platform"
lab device add --dir "$work/lab" demo-device

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
stop_lab
echo "lab stopped; demo done"
