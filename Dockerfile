# weir, built from this repository: `docker build -t weir .`, or
# `docker compose up` (docker-compose.yml) for weir with Kafka, Redis and a
# Kinesis emulator. The image holds the static weir binary and the examples;
# builtin handlers (builtin:iot, builtin:echo, ...) run as plugin
# subprocesses of the same binary, so no other executable is needed.

ARG GO_VERSION=1.26

FROM golang:${GO_VERSION}-bookworm AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
ARG VERSION=dev
RUN CGO_ENABLED=0 go build -trimpath -ldflags "-s -w -X main.version=${VERSION}" -o /out/weir ./cmd/weir

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/weir /usr/local/bin/weir
COPY examples /weir/examples
WORKDIR /weir
ENTRYPOINT ["/usr/local/bin/weir"]
# The IoT example; with KAFKA_BROKERS unset it runs on an in-process broker.
CMD ["run", "-c", "examples/iot/weir.yaml", "--log-format", "json"]
