//go:build !linux

package sim

import "github.com/valyala/fasthttp"

// clientGone cannot tell on this platform: delayed requests are always served.
func clientGone(*fasthttp.RequestCtx) bool { return false }
