// Package config is the sidecar's YAML config file: its format, strict
// loading, defaults, environment overrides and validation.
//
// Each leaf package owns its section (upstream.Config, cache.Config); this
// package composes them with its own sections into Config. Parse starts from
// Defaults, so an absent key (or one written as `~`) keeps its default. The
// file is decoded strictly: an unknown key, a duplicate key, a value of the
// wrong type or a bad value is an error that names the dotted key (for
// example upstream.retry.baseDelay) and, where known, the line or the
// environment variable it came from. Every problem is reported at once
// (errors.Join), and no partly decoded Config is ever returned. A key is
// accepted only once what it controls works, so the one key of the config
// reference (docs/configuration.md) that is not implemented yet, audit,
// is an unknown key.
//
// After the file, the environment overrides: CHITTYID_SERVICE_URL sets
// upstream.url, CHITTYID_SIDECAR_LISTEN sets listen, and CHITTY_ID_TOKEN sets
// the token. The effective upstream token is the content of upstream.tokenFile
// if that is set, else CHITTY_ID_TOKEN, else upstream.token; it ends up in
// Config.Upstream.Token and never appears in an error or in Summary.
package config
