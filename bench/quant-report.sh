#!/bin/sh
# quant-report.sh — quality and speed of a model's quantizations.
#
#   bench/quant-report.sh MODEL.gguf TEXT [OUTDIR]
#
# MODEL is the F32/F16 original. TEXT is split in two halves: the first is
# the calibration text (imatrix, AWQ, GPTQ), the second the evaluation text
# for `quantd perplexity --kld-base MODEL`. For every file type (RTN, i.e.
# plain llama.cpp recipes) and for the calibrated variants of the low-bit
# types it writes one row: type, method, bits per weight, file size, PPL,
# dPPL, mean KLD, same top-1, and generation speed (quantd bench -p 0 -n 32).
# Output: OUTDIR/report.md (a Markdown table), OUTDIR/report.tsv and, when
# gnuplot is installed, OUTDIR/kld-vs-bpw.png (KLD against bits per weight).
#
# Environment: QUANTD (default build/quantd), THREADS (2), CHUNKS (windows
# evaluated, 16), CALIB_CHUNKS (calibration windows, 64), TYPES, CALIB_TYPES,
# EVAL (evaluate on this text instead of TEXT's second half), BENCH (0: skip
# the speed column), PLOT_ONLY (1: redo the table and plot from an existing
# OUTDIR/report.tsv). The speed is the best of 3 runs (shared machines).
set -eu

model=${1:?usage: quant-report.sh MODEL.gguf TEXT [OUTDIR]}
text=${2:?usage: quant-report.sh MODEL.gguf TEXT [OUTDIR]}
out=${3:-quant-report}
qd=${QUANTD:-build/quantd}
th=${THREADS:-2}
chunks=${CHUNKS:-16}
cchunks=${CALIB_CHUNKS:-64}
types=${TYPES:-"Q8_0 Q6_K Q5_K_M Q4_K_M Q4_0 Q3_K_M Q2_K"}
ctypes=${CALIB_TYPES:-"Q4_K_M Q3_K_M Q2_K Q4_0"}

mkdir -p "$out"
tsv="$out/report.tsv"
if [ "${PLOT_ONLY:-0}" = 0 ]; then
size=$(wc -c < "$text")
half=$((size / 2))
head -c "$half" "$text" > "$out/calib.txt"
if [ -n "${EVAL:-}" ]; then
    cp "$EVAL" "$out/eval.txt"
else
    tail -c "+$((half + 1))" "$text" > "$out/eval.txt"
fi

"$qd" imatrix -m "$model" -f "$out/calib.txt" -o "$out/model.imatrix" \
    --chunks "$cchunks" -t "$th" 2>>"$out/log"

printf 'type\tmethod\tbpw\tMiB\tppl\tdppl\tkld\tkld_err\ttop1\ttg\n' > "$tsv"

# row TYPE METHOD FILE
row() {
    f=$3
    st=$("$qd" perplexity -m "$f" -f "$out/eval.txt" --chunks "$chunks" \
        -t "$th" --kld-base "$model" 2>>"$out/log")
    ppl=$(printf '%s\n' "$st" | awk '/^PPL:/ {print $2}')
    dppl=$(printf '%s\n' "$st" | awk '/^dPPL:/ {print $2}')
    kld=$(printf '%s\n' "$st" | awk '/^KLD mean:/ {print $3}')
    klde=$(printf '%s\n' "$st" | awk '/^KLD mean:/ {print $5}')
    top1=$(printf '%s\n' "$st" | awk '/^same top-1:/ {sub("%", "", $3); print $3}')
    tg=-
    if [ "${BENCH:-1}" != 0 ]; then
        tg=$(for k in 1 2 3; do
            "$qd" bench -m "$f" -p 0 -n 32 -t "$th" 2>>"$out/log" |
                awk -F'|' '/tg32/ {split($6, a, " "); print a[1]}'
        done | sort -g | tail -1)
    fi
    # bits per weight over the whole tensor data, from quantd inspect
    bpw=$("$qd" inspect "$f" 2>/dev/null | awk '
        /^tensors:/ {t = 1; next}
        t && NF >= 6 && $1 ~ /^[0-9]+$/ {
            n = 1
            for (i = 4; i <= NF - 2; i++) if ($i ~ /^[0-9]+$/) n *= $i
            bytes += $(NF-1); w += n
        }
        END { if (w) printf "%.2f", 8 * bytes / w }')
    mib=$(awk -v b="$(wc -c < "$f")" 'BEGIN {printf "%.3f", b / 1048576}')
    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$1" "$2" "$bpw" "$mib" \
        "$ppl" "$dppl" "$kld" "$klde" "$top1" "$tg" >> "$tsv"
    echo "$1 $2: bpw $bpw ppl $ppl kld $kld top1 $top1 tg $tg" >&2
}

row F32 - "$model"
for t in $types; do
    "$qd" quantize -q "$model" "$out/rtn-$t.gguf" "$t" "$th" 2>>"$out/log"
    row "$t" rtn "$out/rtn-$t.gguf"
done
for t in $ctypes; do
    "$qd" quantize -q --imatrix "$out/model.imatrix" "$model" \
        "$out/imatrix-$t.gguf" "$t" "$th" 2>>"$out/log"
    row "$t" imatrix "$out/imatrix-$t.gguf"
    for m in awq gptq; do
        "$qd" quantize -q --method "$m" --calib "$out/calib.txt" \
            --calib-chunks "$cchunks" "$model" "$out/$m-$t.gguf" "$t" "$th" \
            2>>"$out/log"
        row "$t" "$m" "$out/$m-$t.gguf"
    done
done

fi

awk -F'\t' 'NR == 1 {
        print "| type | method | bits/weight | file MiB | PPL | dPPL | KLD mean | same top-1 | tg t/s |"
        print "|---|---|---|---|---|---|---|---|---|"; next }
    { printf "| %s | %s | %s | %s | %s | %s | %s ± %s | %s %% | %s |\n",
        $1, $2, $3, $4, $5, $6, $7, $8, $9, $10 }' "$tsv" > "$out/report.md"
cat "$out/report.md"

if command -v gnuplot > /dev/null; then
    # one point per (bpw, KLD): types that give the same file share a label
    for m in rtn imatrix awq gptq; do
        awk -F'\t' -v m="$m" 'NR > 1 && $2 == m {
                k = $3 " " $7
                if (k in lab) lab[k] = lab[k] "=" $1; else lab[k] = $1 }
            END { for (k in lab) print k, lab[k] }' "$tsv" |
            sort -g > "$out/$m.dat"
    done
    gnuplot <<EOF
set terminal png size 640,400 font ",9"
set termoption noenhanced
set output "$out/kld-vs-bpw.png"
set title "$(basename "$model"): KLD vs F32 against bits per weight"
set xlabel "bits per weight (all tensor data)"
set ylabel "mean KLD (log scale)"
set logscale y
set offsets graph 0.08, graph 0.12, 0, 0
set key top right
set grid
plot "$out/rtn.dat" using 1:2 with linespoints pt 7 title "RTN", "$out/rtn.dat" using 1:2:3 with labels offset 0,1 notitle, "$out/imatrix.dat" using 1:2 with points pt 5 title "imatrix", "$out/awq.dat" using 1:2 with points pt 9 title "AWQ", "$out/gptq.dat" using 1:2 with points pt 13 title "GPTQ"
EOF
    echo "plot: $out/kld-vs-bpw.png" >&2
fi
