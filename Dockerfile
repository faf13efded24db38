# chittyid-sidecar image: a static binary on distroless, numeric non-root user.
#
#   docker build --build-arg VERSION=1.2.3 -t ghcr.io/chittyos/chittyid-sidecar:1.2.3 .
#
# No Docker engine runs on our machines: .ci/docker-build-check runs the
# build command between the "build command" markers below exactly as written
# (with /out/ pointed at a temp dir) and checks the binary, and k8s/'s tests
# check that USER, ENTRYPOINT and CMD agree with the Kubernetes manifests.

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
