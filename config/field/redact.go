package field

import (
	"errors"
	"strings"
)

// Redacted stands for a secret in text: what Secret prints, and what
// Redact puts where a secret was.
const Redacted = "[redacted]"

// CredentialOf is the credential of v, a secret sent as a header value:
// the part after its scheme ("Bearer <token>" gives the token), or v
// itself when it has none. A credential shorter than four bytes gives ""
// (looked for, it would match everywhere).
func CredentialOf(v string) string {
	if _, cred, ok := strings.Cut(v, " "); ok {
		v = cred
	}
	if len(v) < 4 {
		return ""
	}
	return v
}

// Redact returns text, which came back from a server that was sent the
// secret v (an Authorization header, an API key), with the credential of
// v (CredentialOf) replaced by Redacted wherever it appears, in any
// letter case: "Bearer <token>", "token=<token>…" and a bare "<token>"
// alike. A server, hostile or broken, can echo what it was sent into any
// text.
func Redact(text, v string) string {
	cred := CredentialOf(v)
	if cred == "" {
		return text
	}
	var b strings.Builder
	for i := IndexFold(text, cred); i >= 0; i = IndexFold(text, cred) {
		b.WriteString(text[:i])
		b.WriteString(Redacted)
		text = text[i+len(cred):]
	}
	if b.Len() == 0 {
		return text
	}
	b.WriteString(text)
	return b.String()
}

// IndexFold is strings.Index ignoring letter case.
func IndexFold(s, sub string) int {
	for i := 0; i+len(sub) <= len(s); i++ {
		if strings.EqualFold(s[i:i+len(sub)], sub) {
			return i
		}
	}
	return -1
}

// RedactErr returns err as it is, or, if its text carries the credential
// of v, a plain error with the text redacted (Redact); errors.Is then no
// longer sees what err wrapped.
func RedactErr(err error, v string) error {
	if err == nil {
		return nil
	}
	if text := err.Error(); Redact(text, v) != text {
		return errors.New(Redact(text, v))
	}
	return err
}
