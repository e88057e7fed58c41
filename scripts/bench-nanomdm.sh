#!/usr/bin/env bash
# The same `custody sim apple` load against NanoMDM v0.9.0 with micromdm's
# scepserver v2.3.0 (one /mdm URL, an unsigned profile as NanoMDM's quick
# start makes it) and against `custody serve`, three alternating runs; each
# server's CPU time per phase is read from /proc (--server-pid). The pinned
# peers are those .ci/run builds into the tools dir.
#   scripts/bench-nanomdm.sh            # 200 devices
#   DEVICES=1000 scripts/bench-nanomdm.sh
set -euo pipefail
cd "$(dirname "$0")/.."
TOOLS=${CUSTODY_TOOLS:-$HOME/.cache/custody-tools}
DEVICES=${DEVICES:-200}
T=$(mktemp -d /tmp/bench-nanomdm.XXXX)
for tool in nanomdm@v0.9.0/nanomdm scepserver@v2.3.0/scepserver; do
  [ -x "$TOOLS/$tool" ] || { echo "missing $TOOLS/$tool: run .ci/run once, or GOBIN=$TOOLS/${tool%/*} go install <module>@<version>"; exit 1; }
done
CUSTODY=$T/bin/custody
go build -o "$CUSTODY" ./cmd/custody
cpu() { awk '{print $14+$15}' /proc/$1/stat; }
tick=$(getconf CLK_TCK)
cleanup() { kill $(jobs -p) 2>/dev/null || true; wait 2>/dev/null || true; }
trap cleanup EXIT

$TOOLS/scepserver@v2.3.0/scepserver ca -init -depot $T/depot -keySize 2048 -organization bench -years 1 >/dev/null 2>&1
$TOOLS/scepserver@v2.3.0/scepserver -depot $T/depot -port 18080 -challenge bench -allowrenew 0 >$T/scep.log 2>&1 &
SCEP=$!
$TOOLS/nanomdm@v0.9.0/nanomdm -listen 127.0.0.1:19000 -ca $T/depot/ca.pem -api k -storage filekv -storage-dsn $T/db >$T/nano.log 2>&1 &
NANO=$!
mkdir -p $T/www
cat > $T/www/enroll.mobileconfig <<PROFILE
<?xml version="1.0" encoding="UTF-8"?>
<!DOCTYPE plist PUBLIC "-//Apple//DTD PLIST 1.0//EN" "http://www.apple.com/DTDs/PropertyList-1.0.dtd">
<plist version="1.0"><dict>
<key>PayloadContent</key><array>
<dict><key>PayloadContent</key><dict><key>Challenge</key><string>bench</string><key>Key Type</key><string>RSA</string><key>Key Usage</key><integer>5</integer><key>Keysize</key><integer>2048</integer><key>URL</key><string>http://127.0.0.1:18080/scep</string></dict>
<key>PayloadIdentifier</key><string>com.github.micromdm.scep</string><key>PayloadType</key><string>com.apple.security.scep</string><key>PayloadUUID</key><string>CB90E976-AD44-4B69-8108-8095E6260978</string><key>PayloadVersion</key><integer>1</integer></dict>
<dict><key>AccessRights</key><integer>8191</integer><key>CheckOutWhenRemoved</key><true/><key>IdentityCertificateUUID</key><string>CB90E976-AD44-4B69-8108-8095E6260978</string><key>PayloadIdentifier</key><string>com.github.micromdm.nanomdm.mdm</string><key>PayloadType</key><string>com.apple.mdm</string><key>PayloadUUID</key><string>96B11019-B54C-49DC-9480-43525834DE7B</string><key>PayloadVersion</key><integer>1</integer><key>ServerURL</key><string>http://127.0.0.1:19000/mdm</string><key>SignMessage</key><true/><key>Topic</key><string>com.apple.mgmt.External.bench</string></dict>
</array>
<key>PayloadIdentifier</key><string>com.github.micromdm.nanomdm</string><key>PayloadType</key><string>Configuration</string><key>PayloadUUID</key><string>F9760DD4-F2D1-4F29-8D2C-48D52DD0A9B3</string><key>PayloadVersion</key><integer>1</integer>
</dict></plist>
PROFILE
python3 -m http.server 18001 --bind 127.0.0.1 --directory $T/www >/dev/null 2>&1 &
$CUSTODY serve --data $T/custody --listen 127.0.0.1:19301 >$T/custody.log 2>&1 &
CUST=$!
sleep 2
run() { # run NAME PIDS... -- SIM ARGS
  local name=$1; shift; local pids=(); while [ "$1" != "--" ]; do pids+=($1); shift; done; shift
  local before=0 after=0
  for p in "${pids[@]}"; do before=$((before + $(cpu $p))); done
  local start=$(date +%s.%N)
  $CUSTODY sim apple "$@" 2>/dev/null > $T/$name.out || { echo "sim $name failed"; cat $T/$name.out; }
  local end=$(date +%s.%N)
  for p in "${pids[@]}"; do after=$((after + $(cpu $p))); done
  echo "== $name: wall $(echo "$end - $start" | bc) s, server CPU $(echo "scale=2; ($after - $before) / $tick" | bc) s"
  grep -E "^(enrol|idle check-ins|errors)" $T/$name.out
}
for i in 1 2 3; do
run nanomdm-$i $NANO $SCEP -- --enroll-url http://127.0.0.1:18001/enroll.mobileconfig --devices $DEVICES --concurrency 8 --checkins 5 --keys 8 --commands 0 --server-pid $NANO --server-pid $SCEP
run custody-$i $CUST -- --data $T/custody --devices $DEVICES --concurrency 8 --checkins 5 --keys 8 --commands 0 --server-pid $CUST
done
echo "NanoMDM log: $T/nano.log; outputs in $T"
