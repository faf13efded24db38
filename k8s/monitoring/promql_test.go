package monitoring

import (
	"fmt"
	"reflect"
	"strings"
	"testing"
)

// What a PromQL expression refers to, found by a small lexer: Prometheus's
// own parser is not a dependency of this module. promtool parses the same
// expressions (TestPromtool, .ci/monitoring), so this lexer only has to find
// names in valid PromQL, not to judge it.

type matcher struct{ Name, Op, Value string }

type selector struct {
	Metric   string
	Matchers []matcher
}

type refs struct {
	Selectors []selector
	// Grouping holds the labels named in by, without, on, ignoring,
	// group_left and group_right clauses.
	Grouping []string
}

// keywords are identifiers that are neither metric names nor functions.
var keywords = map[string]bool{"and": true, "or": true, "unless": true, "bool": true, "offset": true, "atan2": true, "inf": true, "nan": true}

// aggregations are PromQL's aggregation operators, followed by ( or by a
// by/without clause.
var aggregations = map[string]bool{"sum": true, "min": true, "max": true, "avg": true, "group": true, "stddev": true, "stdvar": true,
	"count": true, "count_values": true, "bottomk": true, "topk": true, "quantile": true, "limitk": true, "limit_ratio": true}

// groupingKeywords are followed by a parenthesised list of label names
// (optional for group_left and group_right).
var groupingKeywords = map[string]bool{"by": true, "without": true, "on": true, "ignoring": true, "group_left": true, "group_right": true}

type lexer struct {
	s   string
	pos int
}

func (l *lexer) eof() bool { return l.pos >= len(l.s) }

func (l *lexer) peek() byte {
	if l.eof() {
		return 0
	}
	return l.s[l.pos]
}

func (l *lexer) skipSpace() {
	for !l.eof() && strings.IndexByte(" \t\r\n", l.s[l.pos]) >= 0 {
		l.pos++
	}
}

func isIdentStart(c byte) bool {
	return c == '_' || c == ':' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z'
}
func isIdentChar(c byte) bool { return isIdentStart(c) || c >= '0' && c <= '9' }
func isDigit(c byte) bool     { return c >= '0' && c <= '9' }

func (l *lexer) ident() string {
	start := l.pos
	for !l.eof() && isIdentChar(l.s[l.pos]) {
		l.pos++
	}
	return l.s[start:l.pos]
}

// str reads a quoted string and returns its content, escapes resolved
// roughly (enough for label values).
func (l *lexer) str() (string, error) {
	q := l.s[l.pos]
	start := l.pos
	l.pos++
	var b strings.Builder
	for !l.eof() {
		c := l.s[l.pos]
		switch {
		case c == q:
			l.pos++
			return b.String(), nil
		case c == '\\' && q != '`' && l.pos+1 < len(l.s):
			b.WriteByte(l.s[l.pos+1])
			l.pos += 2
		default:
			b.WriteByte(c)
			l.pos++
		}
	}
	return "", fmt.Errorf("unterminated string at offset %d", start)
}

// skipPast skips to just after the next c (range and subquery brackets).
func (l *lexer) skipPast(c byte) error {
	i := strings.IndexByte(l.s[l.pos:], c)
	if i < 0 {
		return fmt.Errorf("no %q after offset %d", c, l.pos)
	}
	l.pos += i + 1
	return nil
}

// variable skips a Grafana variable: $name, ${name} or ${name:format}.
func (l *lexer) variable() {
	l.pos++ // $
	if l.peek() == '{' {
		_ = l.skipPast('}')
		return
	}
	l.ident()
}

// number skips a number or a duration (5m, 1h30m, 0.95, 1e-3, 0x1f).
func (l *lexer) number() {
	for !l.eof() {
		c := l.s[l.pos]
		if isIdentChar(c) || c == '.' {
			l.pos++
			continue
		}
		if (c == '+' || c == '-') && (l.s[l.pos-1] == 'e' || l.s[l.pos-1] == 'E') {
			l.pos++
			continue
		}
		return
	}
}

// matchers reads {name op "value", ...}; l is at '{'.
func (l *lexer) matchers() ([]matcher, error) {
	l.pos++
	var ms []matcher
	for {
		l.skipSpace()
		switch c := l.peek(); {
		case c == '}':
			l.pos++
			return ms, nil
		case c == ',':
			l.pos++
			continue
		case !isIdentStart(c):
			return nil, fmt.Errorf("label matcher expected at offset %d", l.pos)
		}
		m := matcher{Name: l.ident()}
		l.skipSpace()
		for _, op := range []string{"=~", "!~", "!=", "="} {
			if strings.HasPrefix(l.s[l.pos:], op) {
				m.Op = op
				l.pos += len(op)
				break
			}
		}
		if m.Op == "" {
			return nil, fmt.Errorf("matcher operator expected after %q at offset %d", m.Name, l.pos)
		}
		l.skipSpace()
		if c := l.peek(); c != '"' && c != '\'' && c != '`' {
			return nil, fmt.Errorf("quoted value expected for label %q at offset %d", m.Name, l.pos)
		}
		v, err := l.str()
		if err != nil {
			return nil, err
		}
		m.Value = v
		ms = append(ms, m)
	}
}

// labelList reads (a, b, c); l is at '('.
func (l *lexer) labelList() ([]string, error) {
	l.pos++
	var labels []string
	for {
		l.skipSpace()
		switch c := l.peek(); {
		case c == ')':
			l.pos++
			return labels, nil
		case c == ',':
			l.pos++
		case isIdentStart(c):
			labels = append(labels, l.ident())
		default:
			return nil, fmt.Errorf("label name expected at offset %d", l.pos)
		}
	}
}

// parseRefs returns the selectors and grouping labels of a PromQL
// expression, which may contain Grafana variables.
func parseRefs(expr string) (refs, error) {
	var r refs
	l := &lexer{s: expr}
	for {
		l.skipSpace()
		if l.eof() {
			return r, nil
		}
		c := l.peek()
		switch {
		case c == '#': // comment
			if err := l.skipPast('\n'); err != nil {
				l.pos = len(l.s)
			}
		case c == '"' || c == '\'' || c == '`':
			if _, err := l.str(); err != nil {
				return r, err
			}
		case c == '$':
			l.variable()
		case c == '[':
			if err := l.skipPast(']'); err != nil {
				return r, err
			}
		case c == '{':
			ms, err := l.matchers()
			if err != nil {
				return r, err
			}
			s := selector{Matchers: ms}
			for _, m := range ms {
				if m.Name == "__name__" && m.Op == "=" {
					s.Metric = m.Value
				}
			}
			r.Selectors = append(r.Selectors, s)
		case isDigit(c) || c == '.' && l.pos+1 < len(l.s) && isDigit(l.s[l.pos+1]):
			l.number()
		case isIdentStart(c):
			id := l.ident()
			low := strings.ToLower(id)
			l.skipSpace()
			switch {
			case groupingKeywords[low]:
				if l.peek() == '(' {
					labels, err := l.labelList()
					if err != nil {
						return r, err
					}
					r.Grouping = append(r.Grouping, labels...)
				}
			case keywords[low], aggregations[low]:
			case l.peek() == '(': // a function
			default:
				s := selector{Metric: id}
				if l.peek() == '{' {
					ms, err := l.matchers()
					if err != nil {
						return r, err
					}
					s.Matchers = ms
				}
				r.Selectors = append(r.Selectors, s)
			}
		default:
			l.pos++
		}
	}
}

func TestParseRefs(t *testing.T) {
	for _, c := range []struct {
		expr string
		want refs
	}{
		{`up`, refs{Selectors: []selector{{Metric: "up"}}}},
		{`sum by (namespace, pod) (rate(a_total{x="1",y=~"b|c"}[5m])) / ignoring(le) group_left b > bool 0.5`,
			refs{Selectors: []selector{{"a_total", []matcher{{"x", "=", "1"}, {"y", "=~", "b|c"}}}, {Metric: "b"}},
				Grouping: []string{"namespace", "pod", "le"}}},
		{`histogram_quantile(0.95, sum without (instance) (rate(h_bucket{pod=~"$pod"}[$__rate_interval]) offset 1h))`,
			refs{Selectors: []selector{{"h_bucket", []matcher{{"pod", "=~", "$pod"}}}}, Grouping: []string{"instance"}}},
		{"time() - m and on (pod) n == 0 or vector(0) unless Inf # comment x_total\n", refs{Selectors: []selector{{Metric: "m"}, {Metric: "n"}}, Grouping: []string{"pod"}}},
		{`{__name__="x", a!="b \"q\""}[5m:30s]`, refs{Selectors: []selector{{"x", []matcher{{"__name__", "=", "x"}, {"a", "!=", `b "q"`}}}}}},
		{`label_replace(m, "dst", "$1", "src", "some_metric(.*)")`, refs{Selectors: []selector{{Metric: "m"}}}},
		{`max_over_time(g{s="open"}[2m]) == 1e-3 and 2 * g:rec{}`, refs{Selectors: []selector{{"g", []matcher{{"s", "=", "open"}}}, {Metric: "g:rec"}}}},
	} {
		got, err := parseRefs(c.expr)
		if err != nil {
			t.Errorf("%s: %v", c.expr, err)
			continue
		}
		if !reflect.DeepEqual(got, c.want) {
			t.Errorf("%s:\n got %+v\nwant %+v", c.expr, got, c.want)
		}
	}
	for _, bad := range []string{`m{a="b}`, `m{a}`, `m{a=b}`, `m[5m`} {
		if _, err := parseRefs(bad); err == nil {
			t.Errorf("%s: no error", bad)
		}
	}
}
