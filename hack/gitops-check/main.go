// gitops-check evaluates an object's health the way GitOps tools do, with their own
// libraries, so that berth's tests check the real rules rather than a re-implementation.
//
//	gitops-check argo-health [--open-libs] SCRIPT OBJECT.yaml|-
//	    Runs an Argo CD health.lua with github.com/yuin/gopher-lua as Argo CD's
//	    util/lua does for a health check installed through argocd-cm: only the
//	    package, base and table libraries (no string, math or os unless
//	    --open-libs, which is how Argo CD runs its built-in scripts and
//	    resource.customizations.useOpenLibs.<group_kind>: true), the object as the
//	    global `obj`, a 1 s deadline; the script's returned table is the verdict.
//	gitops-check kstatus OBJECT.yaml|-
//	    sigs.k8s.io/cli-utils/pkg/kstatus/status.Compute, the rules behind Flux's
//	    `wait: true` and healthChecks and `kubectl wait`-style tooling.
//
// Both print one JSON line {"status": ..., "message": ...} and exit 0; a script or object
// that cannot be evaluated exits 1 with the reason on stderr; bad usage exits 2.
// OBJECT is YAML or JSON (`kubectl get -o json` output works), `-` reads standard input.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"time"

	lua "github.com/yuin/gopher-lua"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/cli-utils/pkg/kstatus/status"
	"sigs.k8s.io/yaml"
)

const usage = `usage:
  gitops-check argo-health [--open-libs] SCRIPT OBJECT.yaml|-
  gitops-check kstatus OBJECT.yaml|-`

// Argo CD's health status codes (gitops-engine pkg/health).
var argoStatuses = map[string]bool{
	"Healthy": true, "Progressing": true, "Degraded": true,
	"Suspended": true, "Missing": true, "Unknown": true,
}

type verdict struct {
	Status  string `json:"status"`
	Message string `json:"message"`
}

func main() {
	args := os.Args[1:]
	if len(args) == 0 {
		fail(2, usage)
	}
	var (
		out verdict
		err error
	)
	switch args[0] {
	case "argo-health":
		rest := args[1:]
		openLibs := len(rest) > 0 && rest[0] == "--open-libs"
		if openLibs {
			rest = rest[1:]
		}
		if len(rest) != 2 {
			fail(2, usage)
		}
		out, err = argoHealth(rest[0], rest[1], openLibs)
	case "kstatus":
		if len(args) != 2 {
			fail(2, usage)
		}
		out, err = kstatus(args[1])
	case "-h", "--help", "help":
		fmt.Println(usage)
		return
	default:
		fail(2, usage)
	}
	if err != nil {
		fail(1, "gitops-check: "+err.Error())
	}
	encoder := json.NewEncoder(os.Stdout)
	encoder.SetEscapeHTML(false) // "host-a -> host-b", not "host-a -\u003e host-b"
	if err := encoder.Encode(out); err != nil {
		fail(1, "gitops-check: "+err.Error())
	}
}

func fail(code int, message string) {
	fmt.Fprintln(os.Stderr, message)
	os.Exit(code)
}

// readObject reads one Kubernetes object as the API server would hand it to a client:
// integers become int64, as in a controller's informer cache.
func readObject(path string) (*unstructured.Unstructured, error) {
	var (
		data []byte
		err  error
	)
	if path == "-" {
		data, err = io.ReadAll(os.Stdin)
	} else {
		data, err = os.ReadFile(path)
	}
	if err != nil {
		return nil, err
	}
	asJSON, err := yaml.YAMLToJSON(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	obj := &unstructured.Unstructured{}
	if err := obj.UnmarshalJSON(asJSON); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return obj, nil
}

func kstatus(path string) (verdict, error) {
	obj, err := readObject(path)
	if err != nil {
		return verdict{}, err
	}
	result, err := status.Compute(obj)
	if err != nil {
		return verdict{}, err
	}
	return verdict{Status: string(result.Status), Message: result.Message}, nil
}

func argoHealth(scriptPath, objectPath string, openLibs bool) (verdict, error) {
	script, err := os.ReadFile(scriptPath)
	if err != nil {
		return verdict{}, err
	}
	obj, err := readObject(objectPath)
	if err != nil {
		return verdict{}, err
	}
	L := lua.NewState(lua.Options{SkipOpenLibs: !openLibs})
	defer L.Close()
	for _, lib := range []struct {
		name string
		open lua.LGFunction
	}{
		{lua.LoadLibName, lua.OpenPackage},
		{lua.BaseLibName, lua.OpenBase},
		{lua.TabLibName, lua.OpenTable},
	} {
		if err := L.CallByParam(
			lua.P{Fn: L.NewFunction(lib.open), NRet: 0, Protect: true}, lua.LString(lib.name),
		); err != nil {
			return verdict{}, fmt.Errorf("opening the Lua library %q: %w", lib.name, err)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	L.SetContext(ctx)
	L.SetGlobal("obj", toLua(L, obj.Object))
	if err := L.DoString(string(script)); err != nil {
		return verdict{}, err
	}
	returned := L.Get(-1)
	table, ok := returned.(*lua.LTable)
	if !ok {
		return verdict{}, fmt.Errorf("expect table output from Lua script, not %s", returned.Type())
	}
	if table.Len() > 0 {
		// Argo CD JSON-encodes the table; an array cannot become a HealthStatus.
		return verdict{}, errors.New("the script returned an array, not {status=..., message=...}")
	}
	var out verdict
	for field, into := range map[string]*string{"status": &out.Status, "message": &out.Message} {
		switch value := table.RawGetString(field).(type) {
		case lua.LString:
			*into = string(value)
		case *lua.LNilType:
		default:
			return verdict{}, fmt.Errorf("%s is a Lua %s, not a string", field, value.Type())
		}
	}
	if !argoStatuses[out.Status] {
		// What Argo CD does with a status it does not know.
		return verdict{Status: "Unknown", Message: "Lua returned an invalid health status"}, nil
	}
	return out, nil
}

// toLua converts an unstructured value as Argo CD hands objects to health scripts:
// maps become tables with string keys, lists become 1-based sequences, numbers
// become Lua numbers, null becomes nil.
func toLua(L *lua.LState, value interface{}) lua.LValue {
	switch v := value.(type) {
	case map[string]interface{}:
		table := L.CreateTable(0, len(v))
		for key, item := range v {
			table.RawSetString(key, toLua(L, item))
		}
		return table
	case []interface{}:
		table := L.CreateTable(len(v), 0)
		for _, item := range v {
			table.Append(toLua(L, item))
		}
		return table
	case string:
		return lua.LString(v)
	case bool:
		return lua.LBool(v)
	case int64:
		return lua.LNumber(v)
	case int:
		return lua.LNumber(v)
	case float64:
		return lua.LNumber(v)
	case json.Number:
		return lua.LString(v)
	}
	return lua.LNil
}
