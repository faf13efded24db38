package sim_test

import (
	"fmt"
	"io"
	"net/http"
	"strings"

	"github.com/chittyos/chittyid-sidecar/upstream/chittyid"
	"github.com/chittyos/chittyid-sidecar/upstream/sim"
)

func ExampleStart() {
	s, err := sim.Start(sim.Config{Token: "dev-token"}, "127.0.0.1:0", "127.0.0.1:0")
	if err != nil {
		fmt.Println(err)
		return
	}
	defer s.Close()
	tr := &http.Transport{}
	defer tr.CloseIdleConnections()
	hc := &http.Client{Transport: tr}

	// Point the sidecar's upstream.url at s.URL(); here we mint directly.
	req, _ := http.NewRequest("POST", s.URL()+"/mint", strings.NewReader(`{"entity":"EVNT"}`))
	req.Header.Set("Authorization", "Bearer dev-token")
	resp, err := hc.Do(req)
	if err != nil {
		fmt.Println(err)
		return
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()

	id := s.Minted()[0]
	fmt.Println(resp.StatusCode, chittyid.FormatOfficial.Check(id) == nil, string(id[14]))

	// Make the next mint fail with 503, as a fault drill would.
	if err := s.SetFault(sim.Fault{Mode: sim.ModeStatus, Status: 503, Routes: []string{"mint"}, Count: 1}); err != nil {
		fmt.Println(err)
	}
	fmt.Printf("%+v\n", s.Stats())
	// Output:
	// 200 true E
	// {Mint:1 Batch:0 Validate:0 Health:0 Minted:1 Abandoned:0}
}
