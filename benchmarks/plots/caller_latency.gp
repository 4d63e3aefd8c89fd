# benchmarks/plots/caller_latency.gp: caller latency p50 / p99 / max by strategy, N = 256, one
# panel per loader delay D (log scale).
#
#   gnuplot -e "datafile='bench-out/plot_latency.dat'; outfile='docs/bench-caller-latency.png'" \
#       benchmarks/plots/caller_latency.gp
#
# datafile (written by benchmarks/report.py): 2 blocks, D = 5 ms then D = 50 ms, each with one
# line per strategy: "label" p50_ms p99_ms max_ms.
set terminal pngcairo size 1200,460 font "DejaVu Sans,11"
set output outfile
set multiplot layout 1,2 title "Caller latency by strategy, N = 256 callers on one cold (or stale) key (log scale)"
set logscale y
set yrange [0.0001:1000]
set ytics ("0.1 us" 0.0001, "1 us" 0.001, "10 us" 0.01, "0.1 ms" 0.1, "1 ms" 1, "10 ms" 10, "100 ms" 100, "1 s" 1000)
set xtics norotate
set xlabel "none = cache-aside, seed poll = seed lock + 100 ms poll, blocking / SWR = stampede" font ",9"
set ylabel "caller latency"
set grid
set style data histograms
set style histogram clustered gap 1
set style fill solid 0.8 border -1
set boxwidth 0.9
set key top right
do for [d=0:1] {
  set title sprintf("loader D = %d ms", d == 0 ? 5 : 50)
  plot datafile index d using 2:xtic(1) title "p50", "" index d using 3 title "p99", "" index d using 4 title "max"
}
unset multiplot
