# benchmarks/plots/db_hits.gp: DB hits per wave against N, one panel per loader delay D.
#
#   gnuplot -e "datafile='bench-out/plot_db_hits.dat'; outfile='docs/bench-db-hits.png'; profile='quick'" \
#       benchmarks/plots/db_hits.gp
#
# datafile (written by benchmarks/report.py): 8 blocks, D = 5 ms then D = 50 ms, each with the
# strategies none, seed_lock_poll, stampede_blocking, stampede_swr in that order; a block is a
# quoted title line, then lines "N db_hits_mean db_hits_max".
set terminal pngcairo size 1200,460 font "DejaVu Sans,11"
set output outfile
set multiplot layout 1,2 title sprintf("DB hits per wave: N callers miss one key at once (profile %s, mean of waves)", profile)
set logscale xy
set xrange [0.8:1300]
set yrange [0.8:1300]
set xtics (1, 8, 64, 256, 1024)
set ytics (1, 8, 64, 256, 1024)
set xlabel "N concurrent callers" font ",11"
set ylabel "loader calls (DB hits) per wave"
set grid
set key top left
set label 1 "seed lock + poll, stampede blocking and\nstampede SWR overlap at 1 hit per wave" at graph 0.30, graph 0.16 font ",9"
do for [d=0:1] {
  set title sprintf("loader D = %d ms", d == 0 ? 5 : 50)
  plot for [s=0:3] datafile index (d*4+s) using 1:2 with linespoints lw 2 pt (s+5) title columnheader(1)
}
unset multiplot
