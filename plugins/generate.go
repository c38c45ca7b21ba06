package plugins

// The generated protocol code in plugins/pb is committed. Regenerate it after
// editing proto/weir/handler/v1/handler.proto with
//
//	go generate ./plugins
//
// which needs protoc (3.15 or newer, for proto3 optional; Debian's
// protobuf-compiler) and, on PATH, the Go code generators at the versions the
// committed code was made with:
//
//	go install google.golang.org/protobuf/cmd/protoc-gen-go@v1.36.12
//	go install google.golang.org/grpc/cmd/protoc-gen-go-grpc@v1.6.2
//	export PATH="$PATH:$(go env GOPATH)/bin"

//go:generate protoc -I proto --go_out=. --go_opt=module=github.com/weirhq/weir/plugins --go-grpc_out=. --go-grpc_opt=module=github.com/weirhq/weir/plugins weir/handler/v1/handler.proto
