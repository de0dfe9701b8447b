#!/usr/bin/env bash
# On a machine with an NVIDIA GPU: the node agent must read the real GPU through NVML,
# and a session given one GPU must see exactly that one. Runs the whole stack on
# loopback with the machine's own python3 (which must hold torch); prints what it saw.
#   PYTHONPATH=<deps>:$PWD bash bench/gpu_check.sh
set -u
PY=${PY:-python3}
PORT=${PORT:-5077}
WORK=$(mktemp -d /tmp/podium-gpu-XXXX)
chmod 755 "$WORK"  # sessions run as unprivileged users, who must pass through it
export PODIUM_HOME=$WORK/home PODIUM_NODE_HEARTBEAT_SECONDS=0.5 PODIUM_NODE_MONITOR_SECONDS=1
podium() { "$PY" -m cli "$@"; }

echo "== NVML as the node agent's probe reads it"
"$PY" -c "import json; from nodes.probe import Nvml, ResourceProbe; p = ResourceProbe(Nvml()); print(json.dumps(p.inventory())); print(json.dumps(p.sample()))"

echo "== the stack"
"$PY" -m portal.stack --demo --port "$PORT" --instance "$WORK/instance" > "$WORK/stack.log" 2>&1 &
STACK=$!
for _ in $(seq 600); do grep -q "Podium is up" "$WORK/stack.log" && break; kill -0 $STACK 2>/dev/null || break; sleep 0.2; done
cat "$WORK/stack.log"
if ! grep -q "Podium is up" "$WORK/stack.log"; then
    echo "== the stack did not come up"; kill -TERM $STACK 2>/dev/null; exit 1
fi
echo demo | podium login --url "http://127.0.0.1:$PORT" -u demo --password-stdin
echo admin | PODIUM_HOME=$WORK/admin "$PY" -m cli login --url "http://127.0.0.1:$PORT" -u admin --password-stdin
PODIUM_HOME=$WORK/admin "$PY" -m cli node ls
PODIUM_HOME=$WORK/admin "$PY" -m cli node ls --json

mkdir -p "$WORK/code"
cat > "$WORK/code/gpu_probe.py" <<'PROBE'
import json, os, time
import torch
from cli import sdk
seen = {"CUDA_VISIBLE_DEVICES": os.environ.get("CUDA_VISIBLE_DEVICES"),
        "torch_device_count": torch.cuda.device_count()}
if torch.cuda.is_available():
    seen["device_name"] = torch.cuda.get_device_name(0)
    x = torch.randn(4096, 4096, device="cuda")
    torch.cuda.synchronize()
    started = time.perf_counter()
    for _ in range(10):
        y = x @ x
    torch.cuda.synchronize()
    seen["matmul_tflops"] = round(10 * 2 * 4096**3 / (time.perf_counter() - started) / 1e12, 1)
    sdk.report(step=1, **{"gpu/matmul_tflops": seen["matmul_tflops"]})
print(json.dumps(seen), flush=True)
PROBE

echo "== a session with one GPU"
podium run "$WORK/code/gpu_probe.py" -g 1 -m 16G; echo "exit code $?"
echo "== a session that keeps its GPU busy for 30 s, then its resource history"
cat > "$WORK/code/gpu_busy.py" <<'BUSY'
import time
import torch
x = torch.randn(8192, 8192, device="cuda")
deadline = time.time() + 30
while time.time() < deadline:
    y = x @ x
    torch.cuda.synchronize()
print("done", flush=True)
BUSY
BUSY_ID=$(podium run "$WORK/code/gpu_busy.py" -g 1 -m 16G --detach)
timeout 150 "$PY" -m cli logs "$BUSY_ID" --follow
sleep 2
podium gpumonitor "$BUSY_ID"
podium gpumonitor "$BUSY_ID" --json | "$PY" -c "import json,sys; b=json.load(sys.stdin); u=b['series'].get('gpu0/utilization',{}).get('value',[]); print('average GPU utilisation', b['average_gpu_utilization'], 'max', max(u) if u else None, 'samples', len(u))"
podium gpustat
echo "== a session with no GPU"
podium run "$WORK/code/gpu_probe.py" -m 16G; echo "exit code $?"
echo "== more GPUs than the node has"
podium run "$WORK/code/gpu_probe.py" -g 2; echo "exit code $?"
podium ps
podium events demo/1
PODIUM_HOME=$WORK/admin "$PY" -m cli node ls --json | "$PY" -c "import json,sys; n=json.load(sys.stdin)[0]; print('heartbeat sample:', json.dumps(n['sample']))"

kill -TERM $STACK; wait $STACK
echo "== stack stopped with code $?"
tail -n 20 "$WORK/instance/logs/node.log"
