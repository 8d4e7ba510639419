#!/bin/sh
# bench/awq.sh — an AWQ checkpoint directory against the same model's Q4_0
# and Q4_K_M GGUF in quantd: load time (cold import, cached), prefill and
# decode tokens/s (quantd bench, llama-bench's pp/tg), and the direct-vs-
# repacked kernel comparison (quantd bench --awq-layout).
#
#   bench/awq.sh [WORKDIR]        (default /tmp/quantd-awq-bench)
#
# Environment: QD_BIN (default build/quantd), PRESET (1b), VOCAB (32000),
# THREADS (2), REPS (3), PP (512), TG (128). Files already in WORKDIR are
# reused; delete WORKDIR to rebuild. The model is gen-model's random-weight
# llama of the preset's shape (1b: 2048 wide, 16 layers, GQA 32/8,
# feed-forward 8192, tied embeddings), F16, exported with
# `quantize --to awq` (group 128, zero points: repacked into Q4_G128) and
# quantized with `quantize` to Q4_0 and Q4_K_M.
set -eu
BIN=${QD_BIN:-build/quantd}
W=${1:-/tmp/quantd-awq-bench}
PRESET=${PRESET:-1b}
VOCAB=${VOCAB:-32000}
T=${THREADS:-2}
R=${REPS:-3}
PP=${PP:-512}
TG=${TG:-128}
mkdir -p "$W"
F16=$W/$PRESET-f16.gguf
Q40=$W/$PRESET-Q4_0.gguf
Q4K=$W/$PRESET-Q4_K_M.gguf
AWQ=$W/$PRESET-awq

[ -f "$F16" ] || "$BIN" gen-model --preset "$PRESET" --type F16 --vocab "$VOCAB" -o "$F16"
[ -f "$Q40" ] || "$BIN" quantize -q "$F16" "$Q40" Q4_0 "$T"
[ -f "$Q4K" ] || "$BIN" quantize -q "$F16" "$Q4K" Q4_K_M "$T"
[ -f "$AWQ/model.safetensors" ] || "$BIN" quantize --to awq "$F16" "$AWQ"

now() { date +%s.%N; }
secs() { echo "$1 $2" | awk '{ printf "%.2f", $2 - $1 }'; }

echo "== load time of $AWQ (quantd inspect: open + import or cache)"
rm -f "$AWQ/quantd-import.gguf"
sync
t0=$(now); "$BIN" inspect "$AWQ" >/dev/null 2>&1; t1=$(now)
"$BIN" inspect "$AWQ" >/dev/null 2>&1; t2=$(now)
echo "cold (import + repack + write cache): $(secs "$t0" "$t1") s"
echo "cached:                               $(secs "$t1" "$t2") s"
ls -l "$AWQ/quantd-import.gguf" "$Q40" "$Q4K" | awk '{ printf "%12d  %s\n", $5, $NF }'

echo "== quantd bench -p $PP -n $TG -t $T -r 1, $R rounds of the three models in turn"
res=$W/bench-results.txt
: > "$res"
i=0
while [ "$i" -lt "$R" ]; do
    for m in "$AWQ" "$Q40" "$Q4K"; do
        "$BIN" bench -m "$m" -p "$PP" -n "$TG" -t "$T" -r 1 --json 2>/dev/null |
            sed -n 's/.*"test":"\([a-z0-9]*\)".*"tokens_per_s":\([0-9.]*\).*/\1 \2/p' |
            while read -r test tps; do echo "$(basename "$m") $test $tps"; done >> "$res"
    done
    i=$((i + 1))
done
printf '%-16s %12s %12s   (tokens/s, median of %d)\n' model "pp$PP" "tg$TG" "$R"
for m in "$AWQ" "$Q40" "$Q4K"; do
    n=$(basename "$m")
    med() { grep "^$n $1 " "$res" | awk '{ print $3 }' | sort -g |
            awk '{ v[NR] = $1 } END { if (NR % 2) print v[(NR + 1) / 2];
                  else printf "%.2f\n", (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
    printf '%-16s %12s %12s\n' "$n" "$(med "pp$PP")" "$(med "tg$TG")"
done

echo "== direct AWQ layout vs repacked Q4_G128 (quantd bench --awq-layout -t 1)"
"$BIN" bench --awq-layout -t 1 -r "$R" 2>/dev/null
