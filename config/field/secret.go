package field

// Secret is a config value that never prints: the upstream token, a TLS
// private key, the Redis password. fmt, slog, JSON and YAML encoders see
// "[redacted]" (or "" when it is empty). Use Reveal to get the value, only
// where it is sent.
type Secret string

// String returns "[redacted]", or "" for an empty secret.
func (s Secret) String() string {
	if s == "" {
		return ""
	}
	return Redacted
}

// GoString keeps %#v from printing the value.
func (s Secret) GoString() string { return s.String() }

// MarshalText keeps encoders from writing the value.
func (s Secret) MarshalText() ([]byte, error) { return []byte(s.String()), nil }

// Reveal returns the secret's value, for the one place that sends it (the
// Authorization header, Redis AUTH, the TLS key pair).
func (s Secret) Reveal() string { return string(s) }
