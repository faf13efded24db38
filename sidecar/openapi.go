package sidecar

import (
	_ "embed"

	"github.com/valyala/fasthttp"
)

// openAPI is the OpenAPI 3.1 document of the local API (openapi.json
// beside this file; docs/api.md says the same in words). Read only.
//
//go:embed openapi.json
var openAPI []byte

// serveOpenAPI answers GET /openapi.json on the operations listener.
func serveOpenAPI(ctx *fasthttp.RequestCtx) {
	ctx.SetContentType(contentJSON)
	ctx.SetBody(openAPI)
}
