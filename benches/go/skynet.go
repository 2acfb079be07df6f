// Skynet with goroutines, for comparison with examples/skynet.rs:
//   go run benches/go/skynet.go
// 1M goroutines, fan-out 10, GOMAXPROCS=2; prints each round's time.
package main

import (
	"fmt"
	"runtime"
	"time"
)

func skynet(c chan int, num, size, div int) {
	if size == 1 {
		c <- num
		return
	}
	rc := make(chan int)
	sum := 0
	for i := 0; i < div; i++ {
		go skynet(rc, num+i*(size/div), size/div, div)
	}
	for i := 0; i < div; i++ {
		sum += <-rc
	}
	c <- sum
}

func main() {
	runtime.GOMAXPROCS(2)
	for r := 0; r < 7; r++ {
		c := make(chan int)
		start := time.Now()
		go skynet(c, 0, 1000000, 10)
		result := <-c
		if result != 499999500000 {
			panic(result)
		}
		fmt.Printf("go skynet: %d in %.1f ms\n", result, float64(time.Since(start).Microseconds())/1000.0)
	}
}
