#!/usr/bin/env bash
# Integration with a third-party OpenAI-compatible server: llama-cpp-python's server judges (and
# generates) through valuedrift's remote engines, compared with the local engine
# (crates/valuedrift/tests/remote_llama_cpp.rs). Makes .venv-remote with llama-cpp-python and the
# server extras (fastapi, uvicorn, sse-starlette, starlette-context, pydantic-settings) from PyPI.
#
#   bash scripts/integration/remote.sh            # builds llama-cpp-python from source if needed
#   BASE_PYTHON=/path/with/llama_cpp/bin/python bash scripts/integration/remote.sh
#
# A BASE_PYTHON that already has llama_cpp is reused (--system-site-packages) instead of
# compiling llama.cpp (about 10 minutes on 2 cores).
set -euo pipefail
cd "$(dirname "$0")/../.."
BASE_PYTHON=${BASE_PYTHON:-python3}
VENV=.venv-remote
if [ ! -x "$VENV/bin/python" ]; then
  "$BASE_PYTHON" -m venv "$VENV"
  # BASE_PYTHON's own packages (llama_cpp, if it has it) stay visible, even from another venv.
  SITE=$("$BASE_PYTHON" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
  "$VENV/bin/python" -c "import sysconfig, pathlib; pathlib.Path(sysconfig.get_paths()['purelib'], 'base-python.pth').write_text('$SITE\n')"
fi
if ! "$VENV/bin/python" -c "import llama_cpp" 2>/dev/null; then
  "$VENV/bin/python" -m pip install --quiet "llama-cpp-python==0.3.36"
fi
"$VENV/bin/python" -m pip install --quiet fastapi uvicorn sse-starlette starlette-context pydantic-settings
"$VENV/bin/python" -c "import llama_cpp.server.app" || { echo "llama_cpp.server does not import" >&2; exit 1; }
bash scripts/install-models.sh models smollm2-135m-instruct
VALUEDRIFT_LLAMA_CPP_PYTHON="$PWD/$VENV/bin/python" cargo test --release -p valuedrift --test remote_llama_cpp -- --ignored --nocapture
