#!/usr/bin/env bash
# The side-by-side load benchmark: timgate against nginx and HAProxy (Debian's packages, installed
# when missing) in front of the same emulator, with the same client, in one run; then pacing
# accuracy against nginx's limit_req, and timgate's memory and start-up. Writes the tables into
# README.md between the load-bench markers. Takes about 9 minutes; only 127.0.0.1 is used.
set -euo pipefail
cd "$(dirname "$0")/.."

# Debian's package for each program; nginx-light has the proxy and limit_req modules.
missing=()
command -v nginx >/dev/null 2>&1 || [ -x /usr/sbin/nginx ] || missing+=(nginx-light)
command -v haproxy >/dev/null 2>&1 || [ -x /usr/sbin/haproxy ] || missing+=(haproxy)
if [ ${#missing[@]} -gt 0 ]; then
  echo "installing: ${missing[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi

tables=target/load-tables.md
mkdir -p target
cargo bench --bench load -- all --markdown "$tables"

python3 - "$tables" <<'PY'
import re, sys
tables = open(sys.argv[1]).read().strip()
readme = open("README.md").read()
begin, end = "<!-- load-bench:begin -->", "<!-- load-bench:end -->"
if begin not in readme or end not in readme:
    sys.exit("README.md has no load-bench markers")
head, rest = readme.split(begin, 1)
_, tail = rest.split(end, 1)
open("README.md", "w").write(f"{head}{begin}\n{tables}\n{end}{tail}")
print("README.md updated")
PY
