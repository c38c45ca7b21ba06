// Package pb is the generated Go code of the weir handler protocol
// (plugins/proto/weir/handler/v1/handler.proto). Do not edit the .pb.go
// files; regenerate them with `go generate ./plugins` (see
// plugins/generate.go). Handler authors in Go use plugins/sdk instead.
package pb
