// A stand-in for `helm template`, for CI where the helm binary cannot be installed (it is
// in neither the npm registry nor Debian). It renders a chart with what Helm itself uses:
// Go's text/template and the Sprig function library, plus Helm's own functions that the
// Nexus chart calls (include, tpl, required, toYaml, fromYaml), without env/expandenv (as
// Helm). Values: the chart's values.yaml, deep-merged with each -f file in order (maps
// merge, anything else replaces), as `helm template -f`. Not done: subcharts, lookup,
// .Capabilities, .Files, schema validation (the test validates values with ajv).
//
// Usage: go run main.go [-name RELEASE] CHART_DIR [VALUES_FILE...] ; prints the manifests,
// `---` between. The release is named "test" unless -name says otherwise.
package main

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"text/template"

	"github.com/Masterminds/sprig"
	"gopkg.in/yaml.v3"
)

func readYAML(path string) map[string]interface{} {
	raw, err := os.ReadFile(path)
	if err != nil {
		die(err)
	}
	out := map[string]interface{}{}
	if err := yaml.Unmarshal(raw, &out); err != nil {
		die(fmt.Errorf("%s: %w", path, err))
	}
	return out
}

func mergeInto(dst, src map[string]interface{}) {
	for k, v := range src {
		if sv, ok := v.(map[string]interface{}); ok {
			if dv, ok := dst[k].(map[string]interface{}); ok {
				mergeInto(dv, sv)
				continue
			}
		}
		dst[k] = v
	}
}

func die(err error) {
	fmt.Fprintln(os.Stderr, "Error:", err)
	os.Exit(1)
}

func main() {
	args := os.Args[1:]
	release := "test"
	if len(args) >= 2 && args[0] == "-name" {
		release, args = args[1], args[2:]
	}
	if len(args) < 1 {
		die(fmt.Errorf("usage: render [-name RELEASE] CHART_DIR [VALUES_FILE...]"))
	}
	chartDir := args[0]
	values := readYAML(filepath.Join(chartDir, "values.yaml"))
	for _, f := range args[1:] {
		mergeInto(values, readYAML(f))
	}
	chart := readYAML(filepath.Join(chartDir, "Chart.yaml"))
	root := map[string]interface{}{
		"Values": values,
		"Release": map[string]interface{}{
			"Name": release, "Namespace": "default", "Service": "Helm",
			"Revision": 1, "IsInstall": true, "IsUpgrade": false,
		},
		"Chart": map[string]interface{}{
			"Name": chart["name"], "Version": chart["version"], "AppVersion": chart["appVersion"],
		},
	}

	funcs := sprig.TxtFuncMap()
	delete(funcs, "env")
	delete(funcs, "expandenv")
	t := template.New("chart")
	funcs["toYaml"] = func(v interface{}) string {
		// Helm's toYaml indents by two spaces.
		var buf bytes.Buffer
		enc := yaml.NewEncoder(&buf)
		enc.SetIndent(2)
		if err := enc.Encode(v); err != nil {
			return ""
		}
		return strings.TrimSuffix(buf.String(), "\n")
	}
	funcs["fromYaml"] = func(s string) map[string]interface{} {
		m := map[string]interface{}{}
		_ = yaml.Unmarshal([]byte(s), &m)
		return m
	}
	funcs["required"] = func(msg string, v interface{}) (interface{}, error) {
		if v == nil || v == "" {
			return nil, fmt.Errorf("%s", msg)
		}
		return v, nil
	}
	funcs["include"] = func(name string, data interface{}) (string, error) {
		var buf bytes.Buffer
		err := t.ExecuteTemplate(&buf, name, data)
		return buf.String(), err
	}
	funcs["tpl"] = func(text string, data interface{}) (string, error) {
		c, err := t.Clone()
		if err != nil {
			return "", err
		}
		inner, err := c.New("tpl").Parse(text)
		if err != nil {
			return "", err
		}
		var buf bytes.Buffer
		err = inner.Execute(&buf, data)
		return buf.String(), err
	}
	t.Funcs(funcs).Option("missingkey=zero")

	files, err := filepath.Glob(filepath.Join(chartDir, "templates", "*"))
	if err != nil {
		die(err)
	}
	sort.Strings(files)
	var names []string
	for _, f := range files {
		raw, err := os.ReadFile(f)
		if err != nil {
			die(err)
		}
		name := "nexus/templates/" + filepath.Base(f)
		if _, err := t.New(name).Parse(string(raw)); err != nil {
			die(err)
		}
		base := filepath.Base(f)
		if !strings.HasPrefix(base, "_") && (strings.HasSuffix(base, ".yaml") || strings.HasSuffix(base, ".yml")) {
			names = append(names, name)
		}
	}
	var out bytes.Buffer
	for _, name := range names {
		var buf bytes.Buffer
		if err := t.ExecuteTemplate(&buf, name, root); err != nil {
			die(err)
		}
		// Helm prints "<no value>" for missing keys as empty; so do we.
		text := strings.ReplaceAll(buf.String(), "<no value>", "")
		if strings.TrimSpace(text) == "" {
			continue
		}
		fmt.Fprintf(&out, "---\n# Source: %s\n%s\n", name, strings.TrimSpace(text))
	}
	os.Stdout.Write(out.Bytes())
}
