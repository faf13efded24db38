package docs

import (
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"strings"
	"testing"

	"github.com/chittyos/chittyid-sidecar/config"
)

// configKeys are the dotted keys of the config file, read from the yaml
// tags of config.Config: a struct field with tagged fields of its own is a
// section, anything else a key.
func configKeys(t reflect.Type, prefix string) []string {
	var keys []string
	for i := range t.NumField() {
		f := t.Field(i)
		name, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
		if name == "" || name == "-" {
			continue
		}
		ft := f.Type
		for ft.Kind() == reflect.Pointer {
			ft = ft.Elem()
		}
		if ft.Kind() == reflect.Struct && hasYAMLFields(ft) {
			keys = append(keys, configKeys(ft, prefix+name+".")...)
			continue
		}
		keys = append(keys, prefix+name)
	}
	return keys
}

func hasYAMLFields(t reflect.Type) bool {
	for i := range t.NumField() {
		if tag := t.Field(i).Tag.Get("yaml"); tag != "" && tag != "-" {
			return true
		}
	}
	return false
}

// TestConfigurationReferenceHasEveryKey: every key of the config file has
// a row in docs/configuration.md's table, alone (`a.b.c`) or beside a
// sibling (`a.b.c` / `d`).
func TestConfigurationReferenceHasEveryKey(t *testing.T) {
	t.Parallel()
	p, err := readPage("docs/configuration.md")
	if err != nil {
		t.Fatal(err)
	}
	var rows []string // the first cell of every table row
	for _, l := range p.lines {
		if cells := strings.Split(l, "|"); len(cells) > 2 && strings.HasPrefix(l, "| `") {
			rows = append(rows, cells[1])
		}
	}
	keys := configKeys(reflect.TypeFor[config.Config](), "")
	if len(keys) < 60 {
		t.Fatalf("only %d config keys found: %v", len(keys), keys)
	}
	for _, k := range keys {
		if !documented(k, rows) {
			t.Errorf("docs/configuration.md has no row for %s", k)
		}
	}
}

func documented(key string, rows []string) bool {
	parent, last := "", key
	if i := strings.LastIndexByte(key, '.'); i >= 0 {
		parent, last = key[:i+1], key[i+1:]
	}
	for _, r := range rows {
		if strings.Contains(r, "`"+key+"`") {
			return true
		}
		// `parent.sibling` / `last`
		if parent != "" && strings.Contains(r, "`"+parent) && strings.Contains(r, "/ `"+last+"`") {
			return true
		}
	}
	return false
}

// TestReadmeProductionConfigLoads: the README's minimal production config
// is one the sidecar accepts as it is (its token file made up here).
func TestReadmeProductionConfigLoads(t *testing.T) {
	t.Parallel()
	p, err := readPage("README.md")
	if err != nil {
		t.Fatal(err)
	}
	var yaml string
	for _, f := range p.fences() {
		if f.lang == "yaml" && len(f.body) > 0 && strings.Contains(f.body[0], "/etc/chittyid-sidecar/config.yaml") {
			yaml = strings.Join(f.body, "\n")
		}
	}
	if yaml == "" {
		t.Fatal("README.md has no yaml block headed /etc/chittyid-sidecar/config.yaml")
	}
	m := regexp.MustCompile(`tokenFile: (\S+)`).FindStringSubmatch(yaml)
	if m == nil {
		t.Fatal("the production config names no tokenFile")
	}
	token := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(token, []byte("a-token\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Parse([]byte(strings.Replace(yaml, m[1], token, 1)), func(string) (string, bool) { return "", false })
	if err != nil {
		t.Fatalf("README.md's production config is refused:\n%v", err)
	}
	if w := cfg.TokenWarning(); w != "" {
		t.Errorf("it holds no token: %s", w)
	}
}
