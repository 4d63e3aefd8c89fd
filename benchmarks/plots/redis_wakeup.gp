# benchmarks/plots/redis_wakeup.gp: wake-up of the M-1 waiting Redis clients, pub/sub against
# polling only.
#
#   gnuplot -e "datafile='bench-out/plot_redis_wakeup.dat'; outfile='docs/bench-redis-wakeup.png'" \
#       benchmarks/plots/redis_wakeup.gp
#
# datafile (written by benchmarks/report.py): one line per M:
#   "M = m" pubsub_p50_us pubsub_p99_us poll_p50_us poll_p99_us
set terminal pngcairo size 800,460 font "DejaVu Sans,11"
set output outfile
set bmargin 3
set title "Redis: M Cache+Client instances miss one key; wake-up of the M-1 waiters"
set style data histograms
set style histogram clustered gap 1
set style fill solid 0.8 border -1
set boxwidth 0.9
set logscale y
set yrange [50:200000]
set xtics norotate
set ytics ("100 us" 100, "1 ms" 1000, "10 ms" 10000, "100 ms" 100000)
set xlabel "M instances (one process, separate connections and flights)" font ",11"
set ylabel "loader return -> waiter return"
set grid
set key top left font ",10"
plot datafile using 2:xtic(1) title "pub/sub p50", "" using 3 title "pub/sub p99", \
     "" using 4 title "poll only p50", "" using 5 title "poll only p99"
