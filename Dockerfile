# chittyid-sidecar image: a static binary on distroless, numeric non-root user.
# The last stage is the default target; the injector (k8s/README.md) is the
# target "injector", built from the nested module k8s/.
#
#   docker build --build-arg VERSION=1.2.3 -t ghcr.io/chittyos/chittyid-sidecar:1.2.3 .
#   docker build --target injector --build-arg VERSION=1.2.3 -t ghcr.io/chittyos/chittyid-injector:1.2.3 .
#
# No Docker engine runs on our machines: .ci/docker-build-check runs the
# build commands between the "build command" markers below exactly as
# written (with /out/ pointed at a temp dir) and checks the binaries, and
# k8s/'s tests check that the last stage's USER, ENTRYPOINT and CMD agree
# with the Kubernetes manifests.

# The Go version of go.mod's go line; .ci/docker-build-check compares them.
FROM golang:1.26.8-bookworm AS build
WORKDIR /src
# Modules first, in a layer of their own: it is rebuilt only when go.mod or
# go.sum change, not on every source edit.
COPY go.mod go.sum ./
RUN go mod download
COPY . .
ARG VERSION=dev
# build command: begin
RUN CGO_ENABLED=0 go build -trimpath -ldflags "-s -w -X main.version=${VERSION}" -o /out/chittyid-sidecar ./cmd/chittyid-sidecar
# build command: end

# The injector: the nested module k8s/, which builds against the sidecar's
# module beside it (its go.mod's replace), so both go.mod files come first.
FROM golang:1.26.8-bookworm AS build-injector
WORKDIR /src
COPY go.mod go.sum ./
COPY k8s/go.mod k8s/go.sum ./k8s/
RUN cd k8s && go mod download
COPY . .
ARG VERSION=dev
# injector build command: begin
RUN cd k8s && CGO_ENABLED=0 go build -trimpath -ldflags "-s -w -X main.version=${VERSION}" -o /out/chittyid-injector ./cmd/chittyid-injector
# injector build command: end

FROM gcr.io/distroless/static-debian12:nonroot AS injector
COPY --from=build-injector /out/chittyid-injector /chittyid-injector
USER 65532:65532
# The webhook's TLS port in the Helm chart (serve --listen=:8443).
EXPOSE 8443
ENTRYPOINT ["/chittyid-injector"]
CMD ["serve", "--listen=:8443", "--tls-cert-file=/etc/chittyid-injector/tls/tls.crt", "--tls-key-file=/etc/chittyid-injector/tls/tls.key"]

# No shell, no package manager; user and group nonroot are 65532.
FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/chittyid-sidecar /chittyid-sidecar
# Numeric, so that the kubelet can verify runAsNonRoot.
USER 65532:65532
# The sidecar's API port. It listens on 127.0.0.1:8787 unless its config
# says otherwise (listen, the config default): only processes of the same
# pod reach it. The Kubernetes component's config
# (k8s/components/chittyid-sidecar/config.yaml) keeps it there and gives the
# kubelet's probes metrics.listen on 0.0.0.0:9090 (k8s/README.md).
EXPOSE 8787
ENTRYPOINT ["/chittyid-sidecar"]
CMD ["serve", "--config", "/etc/chittyid-sidecar/config.yaml"]
