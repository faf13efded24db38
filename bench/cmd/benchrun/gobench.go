package main

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"os/exec"
	"strconv"
	"strings"
)

// goBenchLine is one line of `go test -bench -benchmem` output.
type goBenchLine struct {
	Name        string
	NsPerOp     float64
	BytesPerOp  int64
	AllocsPerOp int64
}

// goBench runs the sidecar's cache-hit handler and cache benchmarks on the
// server core, to check allocations per request.
func (b *bench) goBench(ctx context.Context) error {
	b.logf("go benchmarks: cache-hit handler and cache lookups")
	cmd := exec.CommandContext(ctx, "taskset", "-c", strconv.Itoa(serverCore), "go", "test", "-run", "^$",
		"-bench", "^(BenchmarkValidateCachedHandler|BenchmarkLookupHit|BenchmarkFetchHit)$",
		"-benchmem", "-benchtime", "1s", "-count", "1", "./sidecar/", "./cache/")
	cmd.Dir = b.srcDir
	out, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("go test -bench: %w\n%s", err, out)
	}
	b.res.Alloc = parseGoBench(out)
	for _, l := range b.res.Alloc {
		b.logf("  %-60s %8.1f ns/op %4d B/op %2d allocs/op", l.Name, l.NsPerOp, l.BytesPerOp, l.AllocsPerOp)
	}
	return nil
}

func parseGoBench(out []byte) []goBenchLine {
	var lines []goBenchLine
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) < 8 || !strings.HasPrefix(f[0], "Benchmark") {
			continue
		}
		l := goBenchLine{Name: f[0]}
		for i := 2; i+1 < len(f); i += 2 {
			v, err := strconv.ParseFloat(f[i], 64)
			if err != nil {
				continue
			}
			switch f[i+1] {
			case "ns/op":
				l.NsPerOp = v
			case "B/op":
				l.BytesPerOp = int64(v)
			case "allocs/op":
				l.AllocsPerOp = int64(v)
			}
		}
		lines = append(lines, l)
	}
	return lines
}
