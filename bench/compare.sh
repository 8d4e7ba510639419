#!/bin/sh
# compare.sh — quantd bench vs llama.cpp (node-llama-cpp, bench/ref-bench.mjs)
# on the same GGUF file in the same run, with ratios.
#
#   bench/compare.sh MODEL.gguf [-p 512] [-n 128] [-t 2] [-r 2] [--batch 8] [--no-amx]
#
# --no-amx compares the two without AMX tiles, as on a machine that has
# none (a Zen 4 like CI's): quantd with QD_KERNELS=avx512 (AVX-512 VNNI),
# llama.cpp with its best CPU variant short of Sapphire Rapids (zen4 here;
# bench/setup-reference.sh --no-amx makes that install).
#
# QUANTD (default build/quantd) and REF_BENCH (default: ref-bench.mjs next
# to this script; it needs node-llama-cpp in a node_modules above it, see
# bench/setup-reference.sh) choose the programs. The load average is
# printed with each run: on a shared machine the figures move with it.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
QUANTD=${QUANTD:-build/quantd}
REF_BENCH_SET=${REF_BENCH:-}
REF_BENCH=${REF_BENCH:-$here/ref-bench.mjs}
[ $# -ge 1 ] || { echo "usage: $0 MODEL.gguf [-p P] [-n N] [-t T] [-r R] [--batch B] [--no-amx]" >&2; exit 2; }
model=$1; shift
p=512; n=128; t=2; r=2; batch=8; noamx=0
while [ $# -gt 0 ]; do
    case $1 in
    -p) p=$2; shift 2 ;;
    -n) n=$2; shift 2 ;;
    -t) t=$2; shift 2 ;;
    -r) r=$2; shift 2 ;;
    --batch) batch=$2; shift 2 ;;
    --no-amx) noamx=1; shift ;;
    *) echo "$0: unknown option $1" >&2; exit 2 ;;
    esac
done
[ -f "$model" ] || { echo "$0: $model: not found" >&2; exit 1; }
if [ $noamx = 1 ]; then
    export QD_KERNELS=avx512
    if [ -n "$REF_BENCH_SET" ]; then
        echo "$0: --no-amx keeps REF_BENCH=$REF_BENCH: it must be an install without ggml's AMX variant (see the variant printed below)" >&2
    else
        "$here/setup-reference.sh" --no-amx >/dev/null
        REF_BENCH=$here/ref-noamx/ref-bench.mjs
    fi
fi
out=$(mktemp -d "${TMPDIR:-/tmp}/compare.XXXXXX")
trap 'rm -rf "$out"' EXIT
load() { cut -d' ' -f1-3 /proc/loadavg; }

echo "quantd: $QUANTD  reference: $REF_BENCH"
echo "model: $model  threads: $t  reps: $r  ($(nproc) cpus)${QD_KERNELS:+  QD_KERNELS=$QD_KERNELS}"
echo "load before membw:          $(load)"
"$QUANTD" bench --membw -t "$t" -r 3 >"$out/membw.txt" 2>&1 || true
echo "load before quantd:        $(load)"
"$QUANTD" bench -m "$model" -p "$p" -n "$n" -t "$t" -r "$r" --json \
    >"$out/quantd.jsonl" 2>"$out/quantd.err" || { cat "$out/quantd.err" >&2; exit 1; }
echo "load before quantd batch:  $(load)"
"$QUANTD" bench -m "$model" -p 0 -n "$n" -t "$t" -r "$r" --batch "$batch" --json \
    >"$out/batch.jsonl" 2>"$out/batch.err" || { cat "$out/batch.err" >&2; exit 1; }
echo "load before llama.cpp:     $(load)"
if [ -f "$REF_BENCH" ] && node "$REF_BENCH" "$model" -p "$p" -n "$n" -t "$t" -r "$r" \
        >"$out/ref.jsonl" 2>"$out/ref.err"; then
    :
else
    echo "reference bench failed or missing ($REF_BENCH):" >&2
    tail -5 "$out/ref.err" >&2 2>/dev/null || true
    : >"$out/ref.jsonl"
fi
echo "load after:                $(load)"
echo
python3 - "$out" "$p" "$n" "$batch" <<'PY'
import json, re, sys
d, p, n, b = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4]
bpt = 0
variant = [None]
def rd(f):
    global bpt
    res = {}
    for line in open(f"{d}/{f}"):
        line = line.strip()
        if line.startswith("{"):
            o = json.loads(line)
            res[o["test"]] = (o["tokens_per_s"], o.get("tokens_per_s_sd", o.get("sd", 0.0)))
            bpt = o.get("bytes_per_token", bpt)
            if "cpu_variant" in o:
                variant[0] = o["cpu_variant"]
    return res
q, qb, ref = rd("quantd.jsonl"), rd("batch.jsonl"), rd("ref.jsonl")
if variant[0]:
    print(f"llama.cpp CPU variant: {variant[0]}")
def cell(v):
    return "%9.2f ± %6.2f" % v if v else "%18s" % "-"
print("| test       |    quantd (t/s)    | llama.cpp (t/s)    | quantd/llama.cpp |")
print("|------------|--------------------|--------------------|------------------|")
for test in (f"pp{p}", f"tg{n}"):
    a, r_ = q.get(test), ref.get(test)
    ratio = "%16.2f" % (a[0] / r_[0]) if a and r_ and r_[0] > 0 else "%16s" % "-"
    print(f"| {test:<10} | {cell(a)} | {cell(r_)} | {ratio} |")
bt = f"tg{n}x{b}"
if bt in qb and f"tg{n}" in q:
    v = qb[bt]
    print(f"| {bt:<10} | {cell(v)} | {'-':>18} | {'-':>16} |")
    print(f"\nquantd --batch {b}: {v[0]:.2f} t/s aggregate = "
          f"{v[0] / q[f'tg{n}'][0]:.2f}x single-sequence decode")
membw = 0.0
for line in open(f"{d}/membw.txt"):
    m = re.search(r"best: ([0-9.]+) GB/s", line)
    if m:
        membw = float(m.group(1))
tg = f"tg{n}"
if membw > 0 and bpt > 0:
    roof = membw * 1e9 / bpt
    print(f"\nbandwidth (quantd bench --membw, best of 3): {membw:.2f} GB/s; "
          f"weights read per token: {bpt / 1e6:.1f} MB; decode roofline {roof:.2f} t/s")
    for name, res in (("quantd", q), ("llama.cpp", ref)):
        if tg in res:
            print(f"  {name}: {tg} {res[tg][0]:.2f} t/s = {100 * res[tg][0] / roof:.0f}% of the roofline")
PY
