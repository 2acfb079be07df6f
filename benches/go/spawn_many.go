// spawn_many with goroutines, for comparison with the benchmark example's
// spawn_many and fiber_spawn rows:
//   go run benches/go/spawn_many.go
// 100k goroutines spawned from one goroutine, each storing its number,
// all joined (a WaitGroup) and summed; GOMAXPROCS=2; prints each round's
// time and the median.
package main

import (
	"fmt"
	"runtime"
	"sort"
	"sync"
	"time"
)

func spawnMany(n int) time.Duration {
	done := make(chan time.Duration)
	go func() {
		start := time.Now()
		results := make([]int, n)
		var wg sync.WaitGroup
		wg.Add(n)
		for i := 0; i < n; i++ {
			go func(i int) {
				results[i] = i
				wg.Done()
			}(i)
		}
		wg.Wait()
		sum := 0
		for _, v := range results {
			sum += v
		}
		if sum != n*(n-1)/2 {
			panic("wrong sum")
		}
		done <- time.Since(start)
	}()
	return <-done
}

func main() {
	runtime.GOMAXPROCS(2)
	spawnMany(100000) // warm-up
	var times []float64
	for r := 0; r < 15; r++ {
		d := spawnMany(100000)
		times = append(times, float64(d.Microseconds())/1000)
		fmt.Printf("round %d: %.1f ms\n", r+1, times[len(times)-1])
	}
	sort.Float64s(times)
	fmt.Printf("median: %.1f ms (%.0f ns per goroutine)\n", times[len(times)/2], times[len(times)/2]*1e6/100000)
}
