package iot

import _ "embed"

// Config is examples/iot/weir.yaml, the pipeline `weir quickstart` runs.
//
//go:embed weir.yaml
var Config []byte
