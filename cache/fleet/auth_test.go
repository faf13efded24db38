package fleet

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chittyos/chittyid-sidecar/cache/fleet/redisproc/redistest"
)

// TestPasswordRotated: the password (which the config loader reads from
// fleet.redis.passwordFile) is rotated on the server; a tier given the new
// one by Reconfigure uses it for its next connection, while a tier that
// kept the old one fails and is skipped. The password never shows in the
// status or the config's printed form.
func TestPasswordRotated(t *testing.T) {
	t.Parallel()
	srv := startRedis(t, "--requirepass", "old-secret")
	cfg := testConfig(t, srv.Addr)
	cfg.Redis.Password = "old-secret"
	rotated := newTier(t, cfg, testOptions(), true)
	stale := newTier(t, cfg, testOptions(), true)
	ctx := context.Background()
	if err := rotated.Put(ctx, "id", Verdict{Valid: true}, time.Hour); err != nil {
		t.Fatal(err)
	}

	if err := srv.do("old-secret", "CONFIG", "SET", "requirepass", "new-secret").Error(); err != nil {
		t.Fatal(err)
	}
	next := cfg
	next.Redis.Password = "new-secret"
	rotated.Reconfigure(next)
	// Existing connections stay logged in: drop them all.
	if err := srv.do("new-secret", "CLIENT", "KILL", "TYPE", "normal").Error(); err != nil && !strings.Contains(err.Error(), "EOF") {
		t.Fatal(err)
	}
	var err error
	for range 5 { // the first call may meet the killed connection
		var found bool
		if _, found, err = rotated.Get(ctx, "id"); err == nil {
			if !found {
				t.Error("the verdict written before the rotation is gone")
			}
			break
		}
	}
	if err != nil {
		t.Errorf("with the new password: %v", err)
	}
	for range defaultFailuresToSkip + 2 {
		_, _, err = stale.Get(ctx, "id")
	}
	if !errors.Is(err, ErrSkipped) || !strings.Contains(stale.Status().LastError, "WRONGPASS") {
		t.Errorf("with the old password: %v, status %+v; want skipped after WRONGPASS", err, stale.Status())
	}
	for _, s := range []string{fmt.Sprintf("%v %+v %#v", next, next, next), fmt.Sprint(stale.Status()), fmt.Sprint(rotated.Status())} {
		if strings.Contains(s, "secret") {
			t.Errorf("the password shows: %s", s)
		}
	}
}

// TestSentinel: with fleet.redis.sentinel.masterName the addresses are the
// sentinels; the tier finds the master through them and logs in to it with
// the password, which the sentinels get too: one without a password takes
// it for the default user, one with requirepass needs it.
func TestSentinel(t *testing.T) {
	t.Parallel()
	master := startRedis(t, "--requirepass", "pw")
	for _, tc := range []struct{ name, conf string }{
		{"sentinel without a password", ""},
		{"sentinel with the same password", "requirepass pw\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()
			conf := filepath.Join(dir, "sentinel.conf")
			body := fmt.Sprintf("sentinel monitor fleet-master 127.0.0.1 %d 1\nsentinel auth-pass fleet-master pw\n%s", master.Port, tc.conf)
			if err := os.WriteFile(conf, []byte(body), 0o600); err != nil {
				t.Fatal(err)
			}
			sentinel := redistest.StartWith(t, redistest.Options{Conf: conf, Args: []string{"--sentinel"}, Dir: dir, Ready: "+monitor master"})

			cfg := testConfig(t, sentinel.Addr)
			cfg.Redis.Sentinel.MasterName = "fleet-master"
			cfg.Redis.Password = "pw"
			tr := newTier(t, cfg, testOptions(), true)
			ctx := context.Background()
			if err := tr.Put(ctx, "id", Verdict{Valid: true, Value: []byte("PEO")}, time.Hour); err != nil {
				t.Fatal(err)
			}
			if v, found, err := tr.Get(ctx, "id"); err != nil || !found || string(v.Value) != "PEO" {
				t.Errorf("Get through the sentinel = %+v, %v, %v", v, found, err)
			}
			if n, err := master.do("pw", "EXISTS", verdictKey(cfg.KeyPrefix, "id")).AsInt64(); err != nil || n != 1 {
				t.Errorf("the verdict is not on the master: %d, %v", n, err)
			}
			if s := tr.Status(); s.MasterName != "fleet-master" || s.Addrs[0] != sentinel.Addr {
				t.Errorf("status %+v", s)
			}
		})
	}
}

// TestACLUser: a Redis user limited to the key prefix and to the commands
// docs/fleet.md ("Redis") lists is enough for every operation.
func TestACLUser(t *testing.T) {
	t.Parallel()
	srv := startRedis(t)
	cfg := testConfig(t, srv.Addr)
	cfg.KeyPrefix = "chittyid:"
	acl := []string{"ACL", "SETUSER", "chittyid", "on", ">user-pw", "resetkeys", "~chittyid:*", "resetchannels",
		"-@all", "+get", "+set", "+del", "+pttl", "+time", "+eval", "+evalsha", "+ping", "+hello", "+client|setname"}
	if err := srv.do("", acl...).Error(); err != nil {
		t.Fatal(err)
	}
	cfg.Redis.Username, cfg.Redis.Password = "chittyid", "user-pw"
	tr := newTier(t, cfg, testOptions(), true)
	ctx := context.Background()
	if _, src, err := tr.Fetch(ctx, "CT-A-CHI-1234-P-24-A-0", testPolicy(), func(context.Context) (Verdict, error) {
		return Verdict{Valid: true, Value: []byte("PEO")}, nil
	}); err != nil || src != SourceFetched {
		t.Fatalf("Fetch: %s, %v", src, err)
	}
	if _, found, err := tr.Get(ctx, "CT-A-CHI-1234-P-24-A-0"); !found || err != nil {
		t.Errorf("Get: %v, %v", found, err)
	}
	if err := tr.Put(ctx, "CT-A-CHI-9999-P-24-A-0", Verdict{Valid: true}, time.Hour); err != nil {
		t.Error(err)
	}
	if ok, _, err := tr.AllowMint(ctx, 1, 60, 10); !ok || err != nil {
		t.Errorf("AllowMint: %v, %v", ok, err)
	}
	// A failed fetch marks the lock through the fail script.
	if _, _, err := tr.Fetch(ctx, "CT-A-CHI-0000-P-24-A-0", testPolicy(), func(context.Context) (Verdict, error) {
		return Verdict{}, errors.New("upstream down")
	}); err == nil || err.Error() != "upstream down" {
		t.Errorf("failed Fetch: %v", err)
	}
	if st := tr.Stats(); st.Errors != 0 {
		t.Errorf("%d errors under the ACL user: %q", st.Errors, tr.Status().LastError)
	}
}
