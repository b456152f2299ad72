#!/usr/bin/env bash
# Installs LocalStack 4.13.1 into a project-owned virtualenv with the pins that work on
# Python 3.11 (see shared/reference.md). Idempotent: a second run only checks.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
venv="${LOCALSTACK_VENV:-$here/.venv}"
if [ -x "$venv/bin/python" ] && "$venv/bin/python" -c 'import localstack' 2>/dev/null; then
  echo "localstack: venv ready at $venv"
  exit 0
fi
python3 -m venv "$venv"
"$venv/bin/pip" install --quiet --upgrade pip
"$venv/bin/pip" install --quiet \
  'localstack-core[runtime]==4.13.1' 'cryptography<45' 'pyopenssl<25' 'cbor2<5.7' 'joserfc<1.8' service-identity
"$venv/bin/pip" check
echo "localstack: installed into $venv"
