# benchmarks/plots/wakeup.gp: wake-up latency of coalesced callers against N, in process.
#
#   gnuplot -e "datafile='bench-out/plot_wakeup.dat'; outfile='docs/bench-wakeup.png'" \
#       benchmarks/plots/wakeup.gp
#
# datafile (written by benchmarks/report.py): 4 blocks (seed_lock_poll D = 5, 50 ms, then
# stampede_blocking D = 5, 50 ms), each a quoted title line, then lines "N wake_p50_us wake_p99_us".
set terminal pngcairo size 800,460 font "DejaVu Sans,11"
set output outfile
set bmargin 3
set title "Wake-up latency of coalesced callers (loader return -> caller return), in process"
set style data linespoints
set logscale xy
set xrange [6:1300]
set yrange [10:200000]
set xtics (8, 64, 256, 1024) norotate
set ytics ("10 us" 10, "100 us" 100, "1 ms" 1000, "10 ms" 10000, "100 ms" 100000)
set xlabel "N concurrent callers" font ",11"
set ylabel "wake-up p50 (solid) / p99 (dashed)"
set grid
set key bottom right font ",9"
plot for [i=0:3] datafile index i using 1:2 with linespoints lw 2 lc (i+1) pt 7 title columnheader(1), \
     for [i=0:3] datafile index i using 1:3 with lines lw 1 dt 2 lc (i+1) notitle
