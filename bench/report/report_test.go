package report

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/xfaas/xfaas/bench"
)

// sample is a small but complete set of results.
func sample() *bench.Results {
	pt := func(tp, p50 float64) bench.Point {
		return bench.Point{Throughput: tp, MeanMS: p50, P50MS: p50, P99MS: 2 * p50, Requests: 10}
	}
	res := &bench.Results{Started: time.Unix(0, 0), Config: bench.DefaultConfig(true),
		PeakThroughput: map[string]bench.Ratio{}, ClosedLoop: map[string]bench.ClosedSweep{}, OpenLoop: map[string]bench.OpenSweep{},
		ColdStartMS: map[string]bench.Value{}, ColdStart: map[string]bench.Dist{}, MemoryHow: map[string]string{"xfaas": "rss"}}
	for _, wl := range []string{"ro", "rmw", "rmw_linear"} {
		res.PeakThroughput[wl] = bench.Ratio{Xfaas: 300, Redis: 100, Ratio: 3}
		res.ClosedLoop[wl] = bench.ClosedSweep{Clients: []int{1, 8}, Xfaas: []bench.Point{pt(100, 0.1), pt(300, 0.3)}, Redis: []bench.Point{pt(50, 0.2), pt(100, 0.8)}}
		res.OpenLoop[wl] = bench.OpenSweep{Rates: []float64{100}, Xfaas: []bench.Point{pt(100, 0.5)}, Redis: []bench.Point{pt(100, 1)}}
	}
	for _, k := range bench.ColdStartKinds {
		res.ColdStartMS[k] = bench.Value{V: 1}
		res.ColdStart[k] = bench.Dist{N: 3, P50MS: 1, MeanMS: 1, P99MS: 1}
	}
	res.ColdStartMS[bench.ColdSessionRestore] = bench.Value{NA: "no restore yet"}
	res.AccessLatency = bench.AccessSweep{Clients: []int{1, 8}, ValueSize: 16, XfaasNS: []float64{100, 0}, RedisNS: []float64{50000, 90000},
		Ratio: []float64{500, 0}, XfaasBaseMS: []float64{0.2, 1}, RedisBaseMS: []float64{0.4, 2}}
	q := []float64{0.5, 1}
	res.Burst = bench.Burst{Limits: []int{1}, Series: []bench.BurstSeries{{Name: "xfaas-limit-1", Limit: 1, Point: pt(100, 10), CDFQ: q, CDFMS: []float64{10, 20}},
		{Name: "redis", Limit: 1, Point: pt(100, 12), CDFQ: q, CDFMS: []float64{12, 30}}}}
	res.MemoryPerWorkerKiB = bench.Ratio{Xfaas: 200, Redis: 20000, Ratio: 0.01}
	return res
}

func TestWriteMakesEveryFile(t *testing.T) {
	dir := t.TempDir()
	res := sample()
	// Short series must not break the report (the burst CDF has 2 points).
	res.Burst.Series[0].CDFMS = append(res.Burst.Series[0].CDFMS, make([]float64, 98)...)
	res.Burst.Series[1].CDFMS = append(res.Burst.Series[1].CDFMS, make([]float64, 98)...)
	if err := Write(dir, res); err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(filepath.Join(dir, ResultsFile))
	if err != nil {
		t.Fatal(err)
	}
	var back bench.Results
	if err := json.Unmarshal(data, &back); err != nil {
		t.Fatalf("results.json does not read back: %v", err)
	}
	if back.ColdStartMS[bench.ColdSessionRestore].NA != "no restore yet" || back.PeakThroughput["ro"].Ratio != 3 {
		t.Errorf("results.json read back as %+v", back.ColdStartMS)
	}
	md, err := os.ReadFile(filepath.Join(dir, ReportFile))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"| RO | 300 | 100 | 3.00x |", "not available: no restore yet", "500x lower", "![burst_cdf](burst_cdf.png)"} {
		if !strings.Contains(string(md), want) {
			t.Errorf("report.md lacks %q", want)
		}
	}
	pngs, _ := filepath.Glob(filepath.Join(dir, "*.png"))
	if len(pngs) != 13 {
		t.Errorf("%d plots; want 13: %v", len(pngs), pngs)
	}
	for _, p := range pngs {
		if b, _ := os.ReadFile(p); !bytes.HasPrefix(b, []byte("\x89PNG")) {
			t.Errorf("%s is not a PNG", p)
		}
	}
}
