package cache_test

import (
	"context"
	"fmt"
	"time"

	"github.com/chittyos/chittyid-sidecar/cache"
)

func ExampleCache_Fetch() {
	p := cache.Policy{TTL: time.Hour, NegativeTTL: time.Minute, StaleIfError: 24 * time.Hour}
	c, err := cache.New(cache.Defaults(), p)
	if err != nil {
		fmt.Println(err)
		return
	}
	defer c.Close()

	validate := func(ctx context.Context) (cache.Entry, error) {
		ctx, cancel := context.WithTimeout(ctx, 2*time.Second) // the fetch bounds itself
		defer cancel()
		_ = ctx // ask upstream here
		return cache.Entry{Valid: true, FetchedAt: time.Now(), Value: []byte(`{"valid":true}`)}, nil
	}
	for range 2 {
		e, st, err := c.Fetch(context.Background(), "01-1-USR-1234-5-2024-A-17", p, validate)
		fmt.Println(st, e.Valid, string(e.Value), err)
	}
	// Output:
	// MISS true {"valid":true} <nil>
	// HIT true {"valid":true} <nil>
}
