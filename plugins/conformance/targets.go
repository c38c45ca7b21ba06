package conformance

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/weirhq/weir/plugins"
)

// Target is a conformance handler and how to start it.
type Target struct {
	// Name of the implementation: "go", "python", "typescript".
	Name string
	// Config starts the handler. The suite sets Name, Instances, Timeout
	// and StartTimeout on copies of it; Path/Builtin, Args and Env are the
	// target's.
	Config plugins.PoolConfig
}

// InstallHint is the command that installs the SDKs' dependencies.
const InstallHint = "testenv/sdk.sh"

// ErrUnavailable is wrapped by the error of a target whose runtime or
// dependencies are not installed.
var ErrUnavailable = errors.New("SDK runtime not installed")

// RepoRoot returns the root of the weir module: the nearest directory at or
// above the working directory holding go.mod.
func RepoRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("conformance: go.mod not found above the working directory")
		}
		dir = parent
	}
}

// GoTarget is the Go SDK's conformance handler, served by the running
// executable: its TestMain must call
// plugins.ServeBuiltinIfRequested(conformance.Builtins()).
func GoTarget() Target {
	return Target{Name: "go", Config: plugins.PoolConfig{Builtin: BuiltinName}}
}

// Python returns the Python interpreter that has the SDK's dependencies:
// $WEIR_PYTHON if set, else the venv testenv/sdk.sh makes
// (plugins/sdk/python/.venv), else python3 from PATH. The error wraps
// ErrUnavailable and says how to install them.
func Python(root string) (string, error) {
	py := os.Getenv("WEIR_PYTHON")
	if py == "" {
		py = filepath.Join(root, "plugins", "sdk", "python", ".venv", "bin", "python")
		if _, err := os.Stat(py); err != nil {
			py = "python3"
		}
	}
	if found, err := exec.LookPath(py); err != nil {
		return "", fmt.Errorf("%w: python (%s): %w; run %s", ErrUnavailable, py, err, InstallHint)
	} else {
		py = found
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, py, "-c", "import grpc, grpc_health.v1.health, google.protobuf").CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("%w: %s cannot import the Python SDK's dependencies (%w: %s); run %s or pip install -r plugins/sdk/python/requirements.txt",
			ErrUnavailable, py, err, lastLine(out), InstallHint)
	}
	return py, nil
}

// PythonTarget is the Python SDK's conformance handler
// (plugins/sdk/python/conformance_handler.py).
func PythonTarget() (Target, error) {
	root, err := RepoRoot()
	if err != nil {
		return Target{}, err
	}
	py, err := Python(root)
	if err != nil {
		return Target{}, err
	}
	return Target{Name: "python", Config: plugins.PoolConfig{
		Path: py,
		Args: []string{filepath.Join(root, "plugins", "sdk", "python", "conformance_handler.py")},
		Env:  map[string]string{"PYTHONUNBUFFERED": "1", "PYTHONDONTWRITEBYTECODE": "1"},
	}}, nil
}

// TypeScriptTarget is the TypeScript SDK's conformance handler, compiled
// by testenv/sdk.sh to plugins/sdk/typescript/dist/conformance_handler.js
// and run with node from PATH.
func TypeScriptTarget() (Target, error) {
	root, err := RepoRoot()
	if err != nil {
		return Target{}, err
	}
	node, err := exec.LookPath("node")
	if err != nil {
		return Target{}, fmt.Errorf("%w: node: %w; install Node.js 20+, then run %s", ErrUnavailable, err, InstallHint)
	}
	dir := filepath.Join(root, "plugins", "sdk", "typescript")
	script := filepath.Join(dir, "dist", "conformance_handler.js")
	for _, need := range []string{filepath.Join(dir, "node_modules", "@grpc", "grpc-js"), script} {
		if _, err := os.Stat(need); err != nil {
			return Target{}, fmt.Errorf("%w: %s is missing; run %s", ErrUnavailable, need, InstallHint)
		}
	}
	return Target{Name: "typescript", Config: plugins.PoolConfig{Path: node, Args: []string{script}}}, nil
}

func lastLine(b []byte) string {
	s := strings.TrimRight(string(b), "\r\n")
	return s[strings.LastIndexByte(s, '\n')+1:]
}
