# Acquisitions per second against the number of contenders on one name.
set terminal pngcairo size 800,480 font "sans,11"
set output out
set title "One lock name, N contending processes (each its own lease and connection)"
set xlabel "contenders"
set ylabel "acquisitions per second"
set logscale x 2
set xtics (2, 4, 8, 16)
set xrange [1.7:19]
set key top left
set grid ytics
set yrange [0:*]
plot data using 1:2 with linespoints lw 2 pt 7 title "etcdlock", \
     data using 1:3 with linespoints lw 2 pt 5 title "etcd Go concurrency.Mutex"
