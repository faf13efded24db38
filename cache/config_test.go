package cache

import (
	"strings"
	"testing"
)

func TestConfigValidate(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name    string
		cfg     Config
		wantErr []string
	}{
		{"defaults", Defaults(), nil},
		{"smallest size, most shards", Config{MaxSizeMB: 2, Shards: 64}, nil},
		{"one shard", Config{MaxSizeMB: 2, Shards: 1}, nil},
		{"large", Config{MaxSizeMB: 1024, Shards: 4096}, nil},
		{"size too small", Config{MaxSizeMB: 1, Shards: 64}, []string{"cache.maxSizeMB must be >= 2, got 1"}},
		{"shards not a power of two", Config{MaxSizeMB: 64, Shards: 48}, []string{"cache.shards must be a power of two"}},
		{"shards zero", Config{MaxSizeMB: 64}, []string{"cache.shards must be a power of two"}},
		{"shards too many", Config{MaxSizeMB: 64, Shards: 8192}, []string{"between 1 and 4096, got 8192"}},
		{"shards too small for the size", Config{MaxSizeMB: 2, Shards: 128}, []string{"cache.shards must be at most 64 for cache.maxSizeMB 2"}},
		{"default shards, 4 MiB", Config{MaxSizeMB: 4, Shards: 128}, []string{"at most 64"}},
		{"everything wrong", Config{MaxSizeMB: 0, Shards: 3}, []string{"cache.maxSizeMB", "cache.shards"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			err := tc.cfg.Validate()
			if len(tc.wantErr) == 0 {
				if err != nil {
					t.Fatalf("Validate() = %v, want nil", err)
				}
				return
			}
			if err == nil {
				t.Fatalf("Validate() = nil, want errors %q", tc.wantErr)
			}
			for _, want := range tc.wantErr {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("Validate() = %q, want it to contain %q", err, want)
				}
			}
		})
	}
}

func TestPartsMB(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ total, valid, invalid int }{
		{2, 1, 1}, {3, 2, 1}, {4, 3, 1}, {5, 3, 2}, {64, 48, 16},
	} {
		v, n := Config{MaxSizeMB: tc.total}.partsMB()
		if v != tc.valid || n != tc.invalid {
			t.Errorf("partsMB(%d) = %d, %d; want %d, %d", tc.total, v, n, tc.valid, tc.invalid)
		}
	}
}
