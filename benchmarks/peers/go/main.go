// Command go-peer measures Go's sync.Map and golang.org/x/sync/singleflight under the conditions of
// stampede's own benchmarks, and prints Google Benchmark-shaped JSON for benchmarks/report.py.
//
// Built and run by scripts/bench.sh --peers (GOPATH mode, offline, against Debian's
// golang-golang-x-sync-dev):
//
//	GO111MODULE=off GOPATH=/usr/share/gocode go build -o go-peer benchmarks/peers/go/main.go
//	go-peer -profile quick -spread-keys 100000 -out bench-out/peers-go.json
//
// Cases (the same keys and values as benchmarks/bm_hit_path.cpp and bm_waves.cpp):
//
//	BM_Peer_GoSyncMap_HotHit/threads:T      Load of "hot-key" (a 12-byte string value) by T
//	                                        goroutines, GOMAXPROCS = T; items_per_second over all.
//	BM_Peer_GoSyncMap_SpreadHit/threads:1   Load of keys "key:<i>" drawn with the same xorshift
//	                                        sequence from -spread-keys warm keys.
//	BM_Peer_GoSyncMap_BytesPerEntry/keys:K  live heap growth (runtime.ReadMemStats after
//	                                        runtime.GC) of K Stores of 16-byte string values, over K.
//	BM_Peer_GoSingleflight_Wake/N:n/D_ms:d  n goroutines released at once call Group.Do on one key;
//	                                        the load sleeps d ms; wake-up = from the load's return to
//	                                        each waiting caller's return (GOMAXPROCS = NumCPU).
//
// A throughput case warms up, then counts operations over a fixed window; each worker publishes
// its count every 256 operations. Every window is bounded by the profile.
package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sync/singleflight"
)

// profile bounds a run; the names match stampede_bench's --stampede_profile.
type profile struct {
	warmup, window time.Duration
	repetitions    int // > 1: the median is reported
	waves          int
	memoryKeys     int
}

var profiles = map[string]profile{
	"smoke": {10 * time.Millisecond, 20 * time.Millisecond, 1, 1, 10000},
	"quick": {300 * time.Millisecond, 500 * time.Millisecond, 1, 5, 1000000},
	"full":  {1 * time.Second, 2 * time.Second, 3, 20, 1000000},
}

// result is one entry of the benchmarks array (Google Benchmark's field names; counters inline).
type result map[string]any

func newResult(name string, threads int, iterations int64, seconds float64) result {
	r := result{"name": name, "run_name": name, "run_type": "iteration", "repetitions": 1,
		"repetition_index": 0, "threads": threads, "iterations": iterations, "time_unit": "ns"}
	if iterations > 0 {
		r["real_time"] = seconds * 1e9 / float64(iterations)
		r["cpu_time"] = r["real_time"]
	}
	return r
}

// value returns "v-<i>" padded with '.' to size bytes, as make_value in bm_hit_path.cpp.
func value(i, size int) string {
	s := "v-" + strconv.Itoa(i%1000000000)
	if len(s) < size {
		s += strings.Repeat(".", size-len(s))
	}
	return s[:size]
}

type counter struct {
	n int64
	_ [56]byte // one cache line per worker
}

var sink atomic.Int64

// hitRate runs threads goroutines that Load keys (hot when keys is nil) until stopped and returns
// Loads per second over the measuring window.
func hitRate(m *sync.Map, hot any, keys []any, threads int, p profile) (float64, int64, float64) {
	prev := runtime.GOMAXPROCS(threads)
	defer runtime.GOMAXPROCS(prev)
	var stop atomic.Bool
	counts := make([]counter, threads)
	var wg sync.WaitGroup
	for t := 0; t < threads; t++ {
		wg.Add(1)
		go func(t int) {
			defer wg.Done()
			x := uint64(0x9E3779B97F4A7C15) * uint64(t+1)
			n := uint64(len(keys))
			done, acc := int64(0), 0
			for !stop.Load() {
				for i := 0; i < 256; i++ {
					k := hot
					if keys != nil {
						x ^= x << 13
						x ^= x >> 7
						x ^= x << 17
						k = keys[x%n]
					}
					v, _ := m.Load(k)
					acc += len(v.(string))
				}
				done += 256
				atomic.StoreInt64(&counts[t].n, done)
			}
			sink.Add(int64(acc))
		}(t)
	}
	total := func() (s int64) {
		for i := range counts {
			s += atomic.LoadInt64(&counts[i].n)
		}
		return s
	}
	time.Sleep(p.warmup)
	c0, t0 := total(), time.Now()
	time.Sleep(p.window)
	c1, elapsed := total(), time.Since(t0).Seconds()
	stop.Store(true)
	wg.Wait()
	return float64(c1-c0) / elapsed, c1 - c0, elapsed
}

func median(xs []float64) float64 {
	s := append([]float64(nil), xs...)
	sort.Float64s(s)
	return s[len(s)/2]
}

// quantile is the nearest-rank q-quantile, as stampede::bench::quantile; sorts v.
func quantile(v []float64, q float64) float64 {
	if len(v) == 0 {
		return 0
	}
	sort.Float64s(v)
	rank := int(q*float64(len(v)-1) + 0.5)
	if rank >= len(v) {
		rank = len(v) - 1
	}
	return v[rank]
}

func hitCase(name string, m *sync.Map, hot any, keys []any, threads int, p profile) result {
	var rates []float64
	var ops int64
	var secs float64
	for i := 0; i < p.repetitions; i++ {
		r, n, s := hitRate(m, hot, keys, threads, p)
		rates = append(rates, r)
		ops, secs = n, s
	}
	r := newResult(fmt.Sprintf("%s/threads:%d", name, threads), threads, ops, secs)
	r["items_per_second"] = median(rates)
	r["repetitions"] = p.repetitions
	if keys == nil {
		r["keys"] = 1
	} else {
		r["keys"] = len(keys)
	}
	return r
}

func bytesPerEntry(n int) result {
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	t0 := time.Now()
	m := new(sync.Map)
	for i := 0; i < n; i++ {
		m.Store("key:"+strconv.Itoa(i), value(i, 16))
	}
	secs := time.Since(t0).Seconds()
	runtime.GC()
	runtime.ReadMemStats(&after)
	runtime.KeepAlive(m)
	r := newResult(fmt.Sprintf("BM_Peer_GoSyncMap_BytesPerEntry/keys:%d", n), 1, 1, secs)
	r["bytes_per_entry"] = float64(int64(after.HeapAlloc)-int64(before.HeapAlloc)) / float64(n)
	r["keys"] = n
	return r
}

// wakeCase runs waves of n goroutines calling Do on a fresh key per wave, as run_waves in
// benchmarks/wave.hpp does for stampede: a caller that did not load and started before a load
// returned is a coalesced caller; its wake-up is measured from the latest load return before its
// own return.
func wakeCase(n int, d time.Duration, p profile) result {
	base := time.Now()
	now := func() int64 { return int64(time.Since(base)) }
	var wake, latency []float64
	hitsSum, hitsMax, coalesced := 0.0, 0.0, 0.0
	var wall time.Duration
	for w := 0; w < p.waves; w++ {
		var g singleflight.Group
		key := "wave:" + strconv.Itoa(w)
		var mu sync.Mutex
		var returns []int64
		starts, ends := make([]int64, n), make([]int64, n)
		loaded := make([]bool, n)
		start := make(chan struct{})
		var ready, done sync.WaitGroup
		ready.Add(n)
		done.Add(n)
		for i := 0; i < n; i++ {
			go func(i int) {
				defer done.Done()
				ready.Done()
				<-start
				starts[i] = now()
				v, _, _ := g.Do(key, func() (any, error) {
					loaded[i] = true
					time.Sleep(d)
					v := "value-of:" + key
					t := now()
					mu.Lock()
					returns = append(returns, t)
					mu.Unlock()
					return v, nil
				})
				ends[i] = now()
				sink.Add(int64(len(v.(string))))
			}(i)
		}
		ready.Wait()
		released := time.Now()
		close(start)
		done.Wait()
		wall += time.Since(released)
		sort.Slice(returns, func(a, b int) bool { return returns[a] < returns[b] })
		hits := float64(len(returns))
		hitsSum += hits
		if hits > hitsMax {
			hitsMax = hits
		}
		for i := 0; i < n; i++ {
			latency = append(latency, float64(ends[i]-starts[i])/1e3)
			if loaded[i] {
				continue
			}
			j := sort.Search(len(returns), func(j int) bool { return returns[j] > ends[i] })
			if j == 0 || starts[i] >= returns[j-1] {
				continue
			}
			coalesced++
			wake = append(wake, float64(ends[i]-returns[j-1])/1e3)
		}
	}
	r := newResult(fmt.Sprintf("BM_Peer_GoSingleflight_Wake/N:%d/D_ms:%d", n, d.Milliseconds()), 1,
		int64(p.waves), wall.Seconds())
	waves := float64(p.waves)
	r["N"] = n
	r["db_hits"] = hitsSum / waves
	r["db_hits_max"] = hitsMax
	r["coalesced"] = coalesced / waves
	r["wake_samples"] = len(wake)
	r["lat_p50_us"] = quantile(latency, 0.50)
	r["lat_p99_us"] = quantile(latency, 0.99)
	if len(wake) > 0 {
		r["wake_p50_us"] = quantile(wake, 0.50)
		r["wake_p99_us"] = quantile(wake, 0.99)
		r["wake_max_us"] = wake[len(wake)-1]
	}
	return r
}

func main() {
	profileName := flag.String("profile", "quick", "smoke, quick or full")
	spreadKeys := flag.Int("spread-keys", 1000000, "warm keys of the spread case (stampede_bench's spread_keys)")
	out := flag.String("out", "", "JSON output file (default: stdout)")
	flag.Parse()
	p, ok := profiles[*profileName]
	if !ok || *spreadKeys < 1 {
		fmt.Fprintf(os.Stderr, "go-peer: unknown -profile %q or -spread-keys < 1\n", *profileName)
		os.Exit(2)
	}

	var results []result
	hot := new(sync.Map)
	hot.Store("hot-key", value(0, 12))
	var hotKey any = "hot-key"
	for _, t := range []int{1, 2} {
		results = append(results, hitCase("BM_Peer_GoSyncMap_HotHit", hot, hotKey, nil, t, p))
	}
	spread := new(sync.Map)
	keys := make([]any, *spreadKeys)
	for i := range keys {
		k := "key:" + strconv.Itoa(i)
		keys[i] = k // boxed once, so a Load does not convert its key
		spread.Store(k, value(i, 12))
	}
	for i := 0; i < *spreadKeys*2; i++ { // a miss in the read-only map promotes the dirty map
		spread.Load(keys[i%*spreadKeys])
	}
	results = append(results, hitCase("BM_Peer_GoSyncMap_SpreadHit", spread, nil, keys, 1, p))
	spread, keys = nil, nil
	results = append(results, bytesPerEntry(p.memoryKeys))
	for _, d := range []time.Duration{5 * time.Millisecond, 50 * time.Millisecond} {
		for _, n := range []int{64, 1024} {
			results = append(results, wakeCase(n, d, p))
		}
	}

	doc := map[string]any{
		"context": map[string]any{
			"peer_go_version":     runtime.Version(),
			"peer_go_numcpu":      runtime.NumCPU(),
			"peer_go_profile":     *profileName,
			"peer_go_spread_keys": *spreadKeys,
		},
		"benchmarks": results,
	}
	data, err := json.MarshalIndent(doc, "", "  ")
	if err != nil {
		fmt.Fprintln(os.Stderr, "go-peer:", err)
		os.Exit(1)
	}
	if *out == "" {
		fmt.Println(string(data))
		return
	}
	if err := os.WriteFile(*out, append(data, '\n'), 0o644); err != nil {
		fmt.Fprintln(os.Stderr, "go-peer:", err)
		os.Exit(1)
	}
}
