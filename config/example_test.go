package config_test

import (
	"fmt"

	"github.com/chittyos/chittyid-sidecar/config"
)

func ExampleParse() {
	file := []byte(`
listen: 127.0.0.1:8787
upstream:
  url: https://id.chitty.cc/v1
  timeout: 3s
format: numeric
validate: {mode: upstream, ttl: 5m}
`)
	// In main: config.Load(path, os.LookupEnv).
	env := map[string]string{"CHITTY_ID_TOKEN": "secret"}
	lookupEnv := func(k string) (string, bool) { v, ok := env[k]; return v, ok }

	c, err := config.Parse(file, lookupEnv)
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(c.Summary())
	fmt.Println(c.Upstream.Timeout, c.Validation.Policy().NegativeTTL)

	_, err = config.Parse([]byte("upstream:\n  retyr: {}\n  timeout: 5\naudit: {}\n"), lookupEnv)
	fmt.Println(err)
	// Output:
	// listen=127.0.0.1:8787 upstream=https://id.chitty.cc/v1 dialect=client-v1 format=numeric validate=upstream token=set tls=system-roots proxy=env
	// 3s 1m0s
	// line 2: upstream.retyr: unknown key (did you mean "retry"?)
	// line 3: upstream.timeout: must be a duration with a unit such as "5s" or "250ms", got !!int "5"
	// line 4: audit: unknown key
}
