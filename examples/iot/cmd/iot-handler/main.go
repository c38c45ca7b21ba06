// Command iot-handler is the IoT example handler as a standalone weir plugin:
// the same code weir serves as builtin:iot, in its own binary, the way a
// team ships its own handler.
//
//	go build -o bin/iot-handler ./examples/iot/cmd/iot-handler
//	IOT_HANDLER=$PWD/bin/iot-handler weir run -c examples/iot/weir.yaml
//
// weir starts it; run by hand it only says that it is a plugin.
package main

import (
	"github.com/weirhq/weir/examples/iot"
	"github.com/weirhq/weir/plugins/sdk"
)

func main() {
	sdk.Serve(iot.Options(), sdk.PerRecord(iot.Enrich))
}
