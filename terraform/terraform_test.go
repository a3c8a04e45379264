// Package terraform_test checks the Terraform configuration in this
// directory without a terraform binary or an AWS account: it parses every
// .tf file and template with HCL, checks the references between them, and
// checks the parts Strata depends on (the brokers' IAM policy, the
// `strata serve` command line in the user data, the outputs).
//
// TestConfiguration checks the configuration itself; TestChecksCatchBreakage
// breaks copies of it in known ways and expects each check to report it, so
// no check can silently stop working.
package terraform_test

import (
	"bytes"
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/hclparse"
	"github.com/hashicorp/hcl/v2/hclsyntax"
	"github.com/zclconf/go-cty/cty"
	"github.com/zclconf/go-cty/cty/function"
	"github.com/zclconf/go-cty/cty/function/stdlib"
)

// requiredOutputs are the outputs the README and operators rely on.
var requiredOutputs = []string{"bootstrap_servers", "broker_private_ips", "bucket", "etcd_endpoints", "security_group_id"}

// requiredS3Actions are what Strata's S3 backend calls: PutObject (and
// multipart uploads), GetObject (ranged reads, HeadObject), DeleteObject
// (retention), ListBucket (HeadBucket at start, listings).
var requiredS3Actions = []string{"s3:PutObject", "s3:GetObject", "s3:DeleteObject", "s3:ListBucket"}

// requiredStrataFlags must be on the `strata serve` command line of every
// broker: without them a broker would use an embedded etcd, a local remote
// tier, advertise a loopback address or collide on broker id 1.
var requiredStrataFlags = []string{"--data-dir", "--listen", "--advertise", "--broker-id", "--etcd-endpoints", "--remote"}

func TestConfiguration(t *testing.T) {
	for _, p := range check(".", "..", true) {
		t.Error(p)
	}
}

// TestChecksCatchBreakage applies one breaking edit at a time to a copy of
// the configuration and expects check to report it.
func TestChecksCatchBreakage(t *testing.T) {
	const tmpl = "templates/user_data.sh.tftpl"
	cases := []struct {
		name       string
		file       string
		old, new   string // replace the first old with new; old "" appends new
		want       string // a substring of one reported problem
		needsShell bool
	}{
		{"syntax error", "versions.tf", "", "\nresource \"aws_vpc\" {\n", "syntax:", false},
		{"undeclared variable", "brokers.tf", "var.instance_type", "var.instance_typo", `undeclared variable "instance_typo"`, false},
		{"unused variable", "variables.tf", "", "\nvariable \"spare_knob\" {\n  description = \"x\"\n  type        = string\n  default     = \"\"\n}\n", `variable "spare_knob" is never used`, false},
		{"variable without description", "variables.tf", "variable \"force_destroy\" {\n  description", "variable \"force_destroy\" {\n  # description", `variable "force_destroy" has no description`, false},
		{"variable declared twice", "variables.tf", "", "\nvariable \"name\" {\n  description = \"x\"\n  type        = string\n}\n", `variable "name" is declared twice`, false},
		{"variable validation refers to another", "variables.tf", "var.allowed_cidrs == null ? [] : var.allowed_cidrs", "var.allowed_cidrs == null ? [var.vpc_cidr] : var.allowed_cidrs", `variable "allowed_cidrs" refers to "var.vpc_cidr"`, false},
		{"undeclared local", "brokers.tf", "local.etcd_endpoints", "local.etcd_endpoint", `undeclared local "etcd_endpoint"`, false},
		{"unused local", "brokers.tf", "", "\nlocals {\n  spare = 1\n}\n", `local "spare" is never used`, false},
		{"undeclared resource", "brokers.tf", "aws_security_group.broker.id", "aws_security_group.brokers.id", "undeclared resource aws_security_group.brokers", false},
		{"undeclared resource in depends_on", "brokers.tf", "aws_iam_role_policy.tier,", "aws_iam_role_policy.tiers,", "undeclared resource aws_iam_role_policy.tiers", false},
		{"undeclared data source", "brokers.tf", "data.aws_ami.al2023.id", "data.aws_ami.amazon_linux.id", "undeclared data source aws_ami.amazon_linux", false},
		{"unknown reference", "outputs.tf", "aws_s3_bucket.tier.bucket", "bucket.tier.bucket", `unknown reference "bucket.tier.bucket"`, false},
		{"count.index without count", "bucket.tf", "Name = local.bucket_name", "Name = \"${local.bucket_name}-${count.index}\"", "count.index in aws_s3_bucket.tier, which has no count", false},
		{"each without for_each", "network.tf", "cidr_ipv4         = \"0.0.0.0/0\"", "cidr_ipv4         = each.value", "each.value in aws_vpc_security_group_egress_rule.all, which has no for_each", false},
		{"template file missing", "brokers.tf", "${path.module}/templates/user_data.sh.tftpl", "${path.module}/templates/userdata.sh.tftpl", "does not exist", false},
		{"template not from path.module", "brokers.tf", "${path.module}/templates/user_data.sh.tftpl", "${path.cwd}/templates/user_data.sh.tftpl", "build it from path.module", false},
		{"stray template", "brokers.tf", "${path.module}/templates/user_data.sh.tftpl", "${path.module}/templates/../templates/user_data.sh", "is not used by any templatefile call", false},
		{"template syntax error", tmpl, "", "%{ if }\n", "syntax:", false},
		{"template uses a name not passed", tmpl, "set -euo pipefail", "set -euo pipefail\necho \"${HOME}\"", `uses "HOME", which the templatefile call at brokers.tf`, false},
		{"template key never used", "brokers.tf", "extra_args           = var.strata_extra_args", "extra_args           = var.strata_extra_args\n    spare_key = 1", `never uses key "spare_key"`, false},
		{"IAM action missing", "iam.tf", "\"s3:DeleteObject\", ", "", "s3:DeleteObject", false},
		{"IAM wildcard", "iam.tf", "\"s3:AbortMultipartUpload\"", "\"s3:*\"", `grants the wildcard "s3:*"`, false},
		{"no instance profile", "brokers.tf", "iam_instance_profile   = aws_iam_instance_profile.broker.name", "", "has no iam_instance_profile", false},
		{"strata flag missing", tmpl, "  --etcd-endpoints=${etcd_endpoints} \\\n", "", "strata serve lacks --etcd-endpoints", false},
		{"unknown strata flag", tmpl, "--broker.rack=", "--broker-rack=", `"--broker-rack" is not a flag of strata serve`, false},
		{"extra args outside strata serve", tmpl, "--log-format=json%{ for arg in extra_args } \\\n  ${arg}%{ endfor }", "--log-format=json\n# extra: ${join(\" \", extra_args)}", "strata_extra_args do not reach", false},
		{"strata not ordered after etcd", tmpl, "After=network-online.target etcd.service", "After=network-online.target", "must start after etcd.service", false},
		{"strata without LimitNOFILE", tmpl, "LimitNOFILE=1048576", "LimitNOFILE=65536", "LimitNOFILE=1048576", false},
		{"remote not the tier bucket", "brokers.tf", "s3://${aws_s3_bucket.tier.bucket}/", "s3://some-bucket/", "does not refer to the aws_s3_bucket", false},
		{"remote creates the bucket", "brokers.tf", "?region=${var.region}\"", "?region=${var.region}&create_bucket=true\"", "create_bucket", false},
		{"output missing", "outputs.tf", "output \"bootstrap_servers\"", "output \"bootstrap\"", `missing output "bootstrap_servers"`, false},
		{"shell syntax error", tmpl, "    esac\n", "    esca\n", "bash -n", true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			if c.needsShell {
				if _, err := exec.LookPath("bash"); err != nil {
					t.Skip("no bash")
				}
			}
			dir := copyConfig(t)
			path := filepath.Join(dir, filepath.FromSlash(c.file))
			b, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			src := string(b)
			if c.old == "" {
				src += c.new
			} else {
				if !strings.Contains(src, c.old) {
					t.Fatalf("%s no longer contains %q: update this case", c.file, c.old)
				}
				src = strings.Replace(src, c.old, c.new, 1)
			}
			if err := os.WriteFile(path, []byte(src), 0o644); err != nil {
				t.Fatal(err)
			}
			problems := check(dir, "..", c.needsShell)
			for _, p := range problems {
				if strings.Contains(p, c.want) {
					return
				}
			}
			t.Errorf("no problem mentions %q; got %d:\n%s", c.want, len(problems), strings.Join(problems, "\n"))
		})
	}
}

// copyConfig copies the .tf files and templates into a temporary directory.
func copyConfig(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	if err := os.Mkdir(filepath.Join(dir, "templates"), 0o755); err != nil {
		t.Fatal(err)
	}
	files, _ := filepath.Glob("*.tf")
	tmpls, _ := filepath.Glob(filepath.Join("templates", "*"))
	for _, f := range append(files, tmpls...) {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, f), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// module is a parsed Terraform root module.
type module struct {
	dir       string
	problems  []string
	variables map[string]*hclsyntax.Block
	locals    map[string]*hclsyntax.Attribute
	resources map[string]*hclsyntax.Block // "type.name"
	data      map[string]*hclsyntax.Block // "type.name"
	outputs   map[string]*hclsyntax.Block
	modules   map[string]*hclsyntax.Block
	blocks    []*hclsyntax.Block // every top-level block, in file order
	usedVars  map[string]bool
	usedLocal map[string]bool
	calls     []*templateCall
}

// templateCall is one templatefile(path, {...}) call.
type templateCall struct {
	at    string // file:line of the call
	owner string // resource address (or block) holding the call
	attr  string // attribute holding the call
	path  string // template path relative to the module
	keys  map[string]hclsyntax.Expression
	tmpl  hclsyntax.Expression // the parsed template; nil if it did not parse
}

func (m *module) addf(format string, args ...any) {
	m.problems = append(m.problems, fmt.Sprintf(format, args...))
}

func at(r hcl.Range) string { return fmt.Sprintf("%s:%d", r.Filename, r.Start.Line) }

// check returns every problem found in the configuration in dir; repoRoot
// is the Strata repository (for the flags of strata serve). shell runs
// bash -n on the rendered user data (when bash is installed).
func check(dir, repoRoot string, shell bool) []string {
	m := &module{
		dir:       dir,
		variables: map[string]*hclsyntax.Block{},
		locals:    map[string]*hclsyntax.Attribute{},
		resources: map[string]*hclsyntax.Block{},
		data:      map[string]*hclsyntax.Block{},
		outputs:   map[string]*hclsyntax.Block{},
		modules:   map[string]*hclsyntax.Block{},
		usedVars:  map[string]bool{},
		usedLocal: map[string]bool{},
	}
	if !m.parse() {
		return m.problems
	}
	m.checkReferences()
	m.checkTemplates()
	m.checkOutputs()
	m.checkIAM()
	m.checkUserData(repoRoot, shell)
	return m.problems
}

// parse reads every .tf file and indexes the declarations.
func (m *module) parse() bool {
	files, err := filepath.Glob(filepath.Join(m.dir, "*.tf"))
	if err != nil || len(files) == 0 {
		m.addf("no .tf files in %s", m.dir)
		return false
	}
	sort.Strings(files)
	p := hclparse.NewParser()
	ok := true
	for _, f := range files {
		src, err := os.ReadFile(f)
		if err != nil {
			m.addf("%v", err)
			ok = false
			continue
		}
		file, diags := p.ParseHCL(src, filepath.Base(f))
		for _, d := range diags {
			m.addf("syntax: %s", d.Error())
			ok = false
		}
		if diags.HasErrors() {
			continue
		}
		body := file.Body.(*hclsyntax.Body)
		for name, a := range body.Attributes {
			m.addf("%s: top-level attribute %q (only blocks belong here)", at(a.SrcRange), name)
		}
		for _, b := range body.Blocks {
			m.blocks = append(m.blocks, b)
			m.declare(b)
		}
	}
	return ok
}

func (m *module) declare(b *hclsyntax.Block) {
	once := func(kind string, into map[string]*hclsyntax.Block, key string) {
		if prev, dup := into[key]; dup {
			m.addf("%s: %s %q is declared twice (also at %s)", at(b.TypeRange), kind, key, at(prev.TypeRange))
			return
		}
		into[key] = b
	}
	wantLabels := map[string]int{"variable": 1, "output": 1, "module": 1, "resource": 2, "data": 2, "locals": 0, "terraform": 0, "provider": 1}
	n, known := wantLabels[b.Type]
	if !known {
		return // moved, import, check, ...: not referenced by name
	}
	if len(b.Labels) != n {
		m.addf("%s: %s block has %d labels, want %d", at(b.TypeRange), b.Type, len(b.Labels), n)
		return
	}
	switch b.Type {
	case "variable":
		once("variable", m.variables, b.Labels[0])
		if _, ok := b.Body.Attributes["description"]; !ok {
			m.addf("%s: variable %q has no description", at(b.TypeRange), b.Labels[0])
		}
		if _, ok := b.Body.Attributes["type"]; !ok {
			m.addf("%s: variable %q has no type", at(b.TypeRange), b.Labels[0])
		}
	case "output":
		once("output", m.outputs, b.Labels[0])
	case "module":
		once("module", m.modules, b.Labels[0])
	case "resource":
		once("resource", m.resources, b.Labels[0]+"."+b.Labels[1])
	case "data":
		once("data source", m.data, b.Labels[0]+"."+b.Labels[1])
	case "locals":
		for name, a := range b.Body.Attributes {
			if prev, dup := m.locals[name]; dup {
				m.addf("%s: local %q is declared twice (also at %s)", at(a.SrcRange), name, at(prev.SrcRange))
				continue
			}
			m.locals[name] = a
		}
	}
}

// scope is where an expression sits.
type scope struct {
	top       *hclsyntax.Block
	owner     string // "aws_x.y", "data.aws_x.y", "output.x", ...
	count     bool   // the top-level block has count
	forEach   bool   // the top-level block has for_each
	iterators map[string]bool
}

func ownerOf(b *hclsyntax.Block) string {
	switch b.Type {
	case "resource":
		return b.Labels[0] + "." + b.Labels[1]
	case "data":
		return "data." + b.Labels[0] + "." + b.Labels[1]
	case "locals", "terraform":
		return b.Type
	}
	if len(b.Labels) > 0 {
		return b.Type + "." + b.Labels[0]
	}
	return b.Type
}

// eachExpression calls f for every expression in the configuration that
// Terraform evaluates, with its scope.
func (m *module) eachExpression(f func(name string, e hclsyntax.Expression, sc scope)) {
	for _, b := range m.blocks {
		switch b.Type {
		case "terraform", "moved", "import", "removed":
			continue // literals and addresses, not references to check
		}
		_, hasCount := b.Body.Attributes["count"]
		_, hasForEach := b.Body.Attributes["for_each"]
		sc := scope{top: b, owner: ownerOf(b), count: hasCount, forEach: hasForEach}
		m.walkBody(b.Body, b.Type, sc, f)
	}
}

func (m *module) walkBody(body *hclsyntax.Body, blockType string, sc scope, f func(string, hclsyntax.Expression, scope)) {
	names := make([]string, 0, len(body.Attributes))
	for n := range body.Attributes {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		switch {
		case blockType == "variable" && n == "type",
			blockType == "lifecycle" && n == "ignore_changes",
			(sc.top.Type == "resource" || sc.top.Type == "data") && blockType == sc.top.Type && n == "provider",
			sc.top.Type == "module" && blockType == "module" && n == "providers":
			continue // type constraints, attribute names and provider addresses, not references
		}
		f(n, body.Attributes[n].Expr, sc)
	}
	for _, nb := range body.Blocks {
		if nb.Type != "dynamic" || len(nb.Labels) != 1 {
			m.walkBody(nb.Body, nb.Type, sc, f)
			continue
		}
		iter := nb.Labels[0]
		if a, ok := nb.Body.Attributes["iterator"]; ok {
			if kw := hcl.ExprAsKeyword(a.Expr); kw != "" {
				iter = kw
			}
		}
		for _, n := range []string{"for_each", "labels"} {
			if a, ok := nb.Body.Attributes[n]; ok {
				f(n, a.Expr, sc)
			}
		}
		inner := sc
		inner.iterators = map[string]bool{iter: true}
		for k := range sc.iterators {
			inner.iterators[k] = true
		}
		for _, cb := range nb.Body.Blocks {
			if cb.Type == "content" {
				m.walkBody(cb.Body, "content", inner, f)
			}
		}
	}
}

var resourceType = regexp.MustCompile(`^[a-z][a-z0-9]*_[a-z0-9_]+$`)

func attrStep(t hcl.Traversal, i int) (string, bool) {
	if len(t) <= i {
		return "", false
	}
	a, ok := t[i].(hcl.TraverseAttr)
	return a.Name, ok
}

func traversalString(t hcl.Traversal) string {
	var sb strings.Builder
	for i, s := range t {
		switch s := s.(type) {
		case hcl.TraverseRoot:
			sb.WriteString(s.Name)
		case hcl.TraverseAttr:
			sb.WriteString("." + s.Name)
		case hcl.TraverseIndex:
			sb.WriteString("[…]")
		default:
			if i > 0 {
				sb.WriteString("…")
			}
		}
	}
	return sb.String()
}

// checkReferences checks every var., local., data., module. and resource
// reference, count. and each. uses, and that every variable and local is used.
func (m *module) checkReferences() {
	m.eachExpression(func(_ string, e hclsyntax.Expression, sc scope) {
		for _, t := range e.Variables() {
			m.checkTraversal(t, sc)
		}
	})
	for _, name := range sortedKeys(m.variables) {
		if !m.usedVars[name] {
			m.addf("%s: variable %q is never used", at(m.variables[name].TypeRange), name)
		}
	}
	for _, name := range sortedKeys(m.locals) {
		if !m.usedLocal[name] {
			m.addf("%s: local %q is never used", at(m.locals[name].SrcRange), name)
		}
	}
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

func (m *module) checkTraversal(t hcl.Traversal, sc scope) {
	where := at(t.SourceRange())
	root := t.RootName()
	name, ok := attrStep(t, 1)
	if sc.top.Type == "variable" && (root != "var" || name != sc.top.Labels[0]) {
		// Terraform before 1.9 (required_version allows 1.5) evaluates a
		// variable's default and validation with nothing but the variable.
		m.addf("%s: variable %q refers to %q; it may refer only to itself", where, sc.top.Labels[0], traversalString(t))
		return
	}
	switch {
	case sc.iterators[root]:
		return
	case root == "path" || root == "terraform":
		return
	case root == "self":
		return
	case root == "var":
		if !ok {
			m.addf("%s: malformed reference %q", where, traversalString(t))
		} else if _, declared := m.variables[name]; !declared {
			m.addf("%s: undeclared variable %q", where, name)
		} else if sc.top.Type != "variable" {
			m.usedVars[name] = true
		}
	case root == "local":
		if !ok {
			m.addf("%s: malformed reference %q", where, traversalString(t))
		} else if _, declared := m.locals[name]; !declared {
			m.addf("%s: undeclared local %q", where, name)
		} else {
			m.usedLocal[name] = true
		}
	case root == "count":
		if !sc.count {
			m.addf("%s: %s in %s, which has no count", where, traversalString(t), sc.owner)
		}
	case root == "each":
		if !sc.forEach {
			m.addf("%s: %s in %s, which has no for_each", where, traversalString(t), sc.owner)
		}
	case root == "module":
		if _, declared := m.modules[name]; !ok || !declared {
			m.addf("%s: undeclared module in %q", where, traversalString(t))
		}
	case root == "data":
		typ, ok1 := attrStep(t, 1)
		n, ok2 := attrStep(t, 2)
		if _, declared := m.data[typ+"."+n]; !ok1 || !ok2 || !declared {
			m.addf("%s: undeclared data source %s.%s", where, typ, n)
		}
	case resourceType.MatchString(root):
		if _, declared := m.resources[root+"."+name]; !ok || !declared {
			m.addf("%s: undeclared resource %s.%s", where, root, name)
		}
	default:
		m.addf("%s: unknown reference %q", where, traversalString(t))
	}
}

// checkTemplates checks every templatefile call: the file exists under
// path.module, parses, and interpolates exactly the keys it is passed.
func (m *module) checkTemplates() {
	m.eachExpression(func(attr string, e hclsyntax.Expression, sc scope) {
		hclsyntax.VisitAll(e, func(n hclsyntax.Node) hcl.Diagnostics {
			if fc, ok := n.(*hclsyntax.FunctionCallExpr); ok && fc.Name == "templatefile" {
				if c := m.templateCall(fc, sc.owner, attr); c != nil {
					m.calls = append(m.calls, c)
				}
			}
			return nil
		})
	})
	used := map[string]bool{}
	for _, c := range m.calls {
		used[filepath.Clean(c.path)] = true
	}
	stray, _ := filepath.Glob(filepath.Join(m.dir, "templates", "*"))
	for _, s := range stray {
		rel, _ := filepath.Rel(m.dir, s)
		if !used[rel] {
			m.addf("templates: %s is not used by any templatefile call", rel)
		}
	}
}

func (m *module) templateCall(fc *hclsyntax.FunctionCallExpr, owner, attr string) *templateCall {
	where := at(fc.NameRange)
	if len(fc.Args) != 2 || fc.ExpandFinal {
		m.addf("%s: templatefile takes a path and a map of variables", where)
		return nil
	}
	for _, t := range fc.Args[0].Variables() {
		if traversalString(t) != "path.module" {
			m.addf("%s: templatefile path refers to %q; build it from path.module and literal text", where, traversalString(t))
			return nil
		}
	}
	ctx := &hcl.EvalContext{Variables: map[string]cty.Value{
		"path": cty.ObjectVal(map[string]cty.Value{"module": cty.StringVal(".")}),
	}}
	pv, diags := fc.Args[0].Value(ctx)
	if diags.HasErrors() || !pv.Type().Equals(cty.String) || !pv.IsKnown() || pv.IsNull() {
		m.addf("%s: templatefile path is not a constant string: %s", where, diags.Error())
		return nil
	}
	c := &templateCall{at: where, owner: owner, attr: attr, path: filepath.Clean(filepath.FromSlash(pv.AsString())), keys: map[string]hclsyntax.Expression{}}
	obj, ok := fc.Args[1].(*hclsyntax.ObjectConsExpr)
	if !ok {
		m.addf("%s: pass templatefile's variables as an inline { ... } object so they can be checked", where)
		return nil
	}
	for _, item := range obj.Items {
		kv, diags := item.KeyExpr.Value(nil)
		if diags.HasErrors() || !kv.Type().Equals(cty.String) || !kv.IsKnown() {
			m.addf("%s: templatefile variable names must be constant", at(item.KeyExpr.Range()))
			continue
		}
		c.keys[kv.AsString()] = item.ValueExpr
	}
	src, err := os.ReadFile(filepath.Join(m.dir, c.path))
	if err != nil {
		m.addf("%s: template %s does not exist: %v", where, c.path, err)
		return c
	}
	tmpl, diags := hclsyntax.ParseTemplate(src, filepath.ToSlash(c.path), hcl.InitialPos)
	for _, d := range diags {
		m.addf("syntax: %s", d.Error())
	}
	if diags.HasErrors() {
		return c
	}
	c.tmpl = tmpl
	uses := map[string]bool{}
	for _, t := range tmpl.Variables() {
		root := t.RootName()
		uses[root] = true
		if _, ok := c.keys[root]; !ok {
			m.addf("%s: template uses %q, which the templatefile call at %s does not pass (a literal dollar-brace in a template is written $${)",
				at(t.SourceRange()), root, where)
		}
	}
	for k := range c.keys {
		if !uses[k] {
			m.addf("%s: template %s never uses key %q", where, c.path, k)
		}
	}
	return c
}

func (m *module) checkOutputs() {
	for _, o := range requiredOutputs {
		if _, ok := m.outputs[o]; !ok {
			m.addf("missing output %q", o)
		}
	}
}

// deps follows an expression through locals and returns the addresses it
// refers to (resources as "type.name", "var.x", "data.type.name") and
// every literal string in it.
func (m *module) deps(e hclsyntax.Expression) (refs map[string]bool, lits []string) {
	refs = map[string]bool{}
	seen := map[string]bool{}
	var walk func(e hclsyntax.Expression)
	walk = func(e hclsyntax.Expression) {
		hclsyntax.VisitAll(e, func(n hclsyntax.Node) hcl.Diagnostics {
			if lv, ok := n.(*hclsyntax.LiteralValueExpr); ok && lv.Val.Type() == cty.String && lv.Val.IsKnown() && !lv.Val.IsNull() {
				lits = append(lits, lv.Val.AsString())
			}
			return nil
		})
		for _, t := range e.Variables() {
			root := t.RootName()
			a1, _ := attrStep(t, 1)
			switch {
			case root == "local":
				if a, ok := m.locals[a1]; ok && !seen[a1] {
					seen[a1] = true
					walk(a.Expr)
				}
			case root == "data":
				a2, _ := attrStep(t, 2)
				refs["data."+a1+"."+a2] = true
			default:
				refs[root+"."+a1] = true
			}
		}
	}
	walk(e)
	return refs, lits
}

func (m *module) resourcesOfType(typ string) []string {
	var out []string
	for addr := range m.resources {
		if strings.HasPrefix(addr, typ+".") {
			out = append(out, addr)
		}
	}
	sort.Strings(out)
	return out
}

// refsOfType returns the resources of type typ that attribute attr of the
// resource addr refers to.
func (m *module) refsOfType(addr, attr, typ string) []string {
	a, ok := m.resources[addr].Body.Attributes[attr]
	if !ok {
		return nil
	}
	refs, _ := m.deps(a.Expr)
	var out []string
	for r := range refs {
		if strings.HasPrefix(r, typ+".") {
			out = append(out, r)
		}
	}
	sort.Strings(out)
	return out
}

// checkIAM follows every broker instance to its instance profile, role and
// inline policies and checks that a policy on the tier bucket grants what
// Strata's S3 backend needs, without wildcards.
func (m *module) checkIAM() {
	instances := m.resourcesOfType("aws_instance")
	if len(instances) == 0 {
		m.addf("no aws_instance resources")
	}
	for _, inst := range instances {
		profiles := m.refsOfType(inst, "iam_instance_profile", "aws_iam_instance_profile")
		if len(profiles) != 1 {
			m.addf("%s has no iam_instance_profile from an aws_iam_instance_profile of this configuration: Strata gets its S3 credentials from the instance role", inst)
			continue
		}
		roles := m.refsOfType(profiles[0], "role", "aws_iam_role")
		if len(roles) != 1 {
			m.addf("%s has no role from an aws_iam_role of this configuration", profiles[0])
			continue
		}
		actions := map[string]bool{}
		found := false
		for _, pol := range m.resourcesOfType("aws_iam_role_policy") {
			if !slices.Contains(m.refsOfType(pol, "role", "aws_iam_role"), roles[0]) {
				continue
			}
			if len(m.refsOfType(pol, "policy", "aws_s3_bucket")) == 0 {
				continue
			}
			found = true
			_, lits := m.deps(m.resources[pol].Body.Attributes["policy"].Expr)
			for _, l := range lits {
				if l == "*" || strings.HasPrefix(l, "s3:") && strings.Contains(l, "*") {
					m.addf("%s grants the wildcard %q; grant the actions Strata uses", pol, l)
				}
				if strings.HasPrefix(l, "s3:") {
					actions[l] = true
				}
			}
		}
		if !found {
			m.addf("role %s of %s has no aws_iam_role_policy on an aws_s3_bucket of this configuration", roles[0], inst)
			continue
		}
		for _, a := range requiredS3Actions {
			if !actions[a] {
				m.addf("the S3 policies of role %s do not grant %s, which Strata's S3 backend needs", roles[0], a)
			}
		}
	}
}

// checkUserData renders each broker's user data template with placeholder
// values and checks the shell syntax and the strata systemd unit.
func (m *module) checkUserData(repoRoot string, shell bool) {
	flags, err := strataServeFlags(repoRoot)
	if err != nil {
		m.addf("reading the flags of strata serve: %v", err)
	}
	tierBuckets := map[string]bool{}
	for _, pol := range m.resourcesOfType("aws_iam_role_policy") {
		for _, b := range m.refsOfType(pol, "policy", "aws_s3_bucket") {
			tierBuckets[b] = true
		}
	}
	for _, inst := range m.resourcesOfType("aws_instance") {
		var call *templateCall
		for _, c := range m.calls {
			if c.owner == inst && c.attr == "user_data" {
				call = c
			}
		}
		if call == nil {
			m.addf("%s: user_data is not rendered with templatefile", inst)
			continue
		}
		if call.tmpl == nil {
			continue // already reported
		}
		const extraSample = "--sample.extra-arg=1"
		vars := map[string]cty.Value{}
		var extraKey string
		for k, e := range call.keys {
			vars[k] = cty.StringVal("@" + k + "@")
			if m.isListVariable(e) {
				vars[k] = cty.ListVal([]cty.Value{cty.StringVal(extraSample)})
				extraKey = k
			}
		}
		out, diags := call.tmpl.Value(&hcl.EvalContext{Variables: vars, Functions: templateFunctions})
		if diags.HasErrors() {
			m.addf("%s: rendering %s: %s", call.at, call.path, diags.Error())
			continue
		}
		script := out.AsString()
		if sh, err := exec.LookPath("bash"); err == nil && shell {
			cmd := exec.Command(sh, "-n")
			cmd.Stdin = strings.NewReader(script)
			var stderr bytes.Buffer
			cmd.Stderr = &stderr
			if err := cmd.Run(); err != nil {
				m.addf("%s: bash -n on the rendered script: %v: %s", call.path, err, stderr.String())
			}
		}
		unit, args := strataUnit(script)
		if args == nil {
			m.addf("%s: no ExecStart=.../strata serve line", call.path)
			continue
		}
		have := map[string]string{}
		for _, a := range args {
			name, val, _ := strings.Cut(a, "=")
			have[name] = val
			if a == extraSample {
				continue
			}
			if !strings.HasPrefix(name, "-") {
				m.addf("%s: strata serve argument %q is not a flag", call.path, a)
				continue
			}
			if flags != nil && !flags[strings.TrimLeft(name, "-")] {
				m.addf("%s: %q is not a flag of strata serve", call.path, name)
			}
		}
		for _, f := range requiredStrataFlags {
			if _, ok := have[f]; !ok {
				m.addf("%s: strata serve lacks %s", call.path, f)
			}
		}
		if extraKey == "" {
			m.addf("%s: no list of extra strata flags is passed to the template", call.at)
		} else if !slices.Contains(args, extraSample) {
			m.addf("%s: strata_extra_args do not reach the strata serve command line", call.path)
		}
		m.checkRemote(call, have["--remote"], tierBuckets)

		if !strings.Contains(unit["After"], "etcd.service") {
			m.addf("%s: strata.service must start after etcd.service (After=)", call.path)
		}
		if !strings.Contains(unit["Wants"]+" "+unit["Requires"], "etcd.service") {
			m.addf("%s: strata.service must pull in etcd.service (Wants= or Requires=)", call.path)
		}
		if unit["Restart"] != "always" {
			m.addf("%s: strata.service needs Restart=always", call.path)
		}
		if unit["LimitNOFILE"] != "1048576" {
			m.addf("%s: strata.service needs LimitNOFILE=1048576", call.path)
		}
		if u := unit["User"]; u == "" || u == "root" {
			m.addf("%s: strata.service must run as a dedicated user, not %q", call.path, u)
		}
	}
}

// checkRemote checks that --remote is an s3:// URL of a tier bucket
// created here, with a region, and without create_bucket.
func (m *module) checkRemote(call *templateCall, rendered string, tierBuckets map[string]bool) {
	if rendered == "" {
		return // reported as a missing flag
	}
	key := strings.TrimSuffix(strings.TrimPrefix(rendered, "@"), "@")
	e, ok := call.keys[key]
	if !ok {
		m.addf("%s: --remote must be exactly one templatefile variable, got %q", call.path, rendered)
		return
	}
	refs, lits := m.deps(e)
	all := strings.Join(lits, "")
	if !strings.HasPrefix(strings.Join(lits, "|"), "s3://") || !strings.Contains(all, "?region=") {
		m.addf("%s: --remote (%s) must be s3://<bucket>/<prefix>?region=<region>", call.at, key)
	}
	if strings.Contains(all, "create_bucket") {
		m.addf("%s: --remote must not ask for create_bucket: Terraform creates the bucket", call.at)
	}
	for r := range refs {
		if tierBuckets[r] {
			return
		}
	}
	m.addf("%s: --remote (%s) does not refer to the aws_s3_bucket the brokers' IAM policy covers", call.at, key)
}

// templateFunctions are the Terraform functions a template may call when
// the test renders it (Terraform has more; add them here when needed).
var templateFunctions = map[string]function.Function{
	"format":     stdlib.FormatFunc,
	"join":       stdlib.JoinFunc,
	"jsonencode": stdlib.JSONEncodeFunc,
	"length":     stdlib.LengthFunc,
	"lower":      stdlib.LowerFunc,
	"replace":    stdlib.ReplaceFunc,
	"trimspace":  stdlib.TrimSpaceFunc,
	"upper":      stdlib.UpperFunc,
}

// isListVariable reports whether e is var.X with X declared as list(...) or set(...).
func (m *module) isListVariable(e hclsyntax.Expression) bool {
	st, ok := e.(*hclsyntax.ScopeTraversalExpr)
	if !ok || st.Traversal.RootName() != "var" {
		return false
	}
	name, _ := attrStep(st.Traversal, 1)
	v, ok := m.variables[name]
	if !ok {
		return false
	}
	ta, ok := v.Body.Attributes["type"]
	if !ok {
		return false
	}
	fc, ok := ta.Expr.(*hclsyntax.FunctionCallExpr)
	return ok && (fc.Name == "list" || fc.Name == "set")
}

// strataUnit finds the systemd unit in script whose ExecStart runs
// `strata serve` and returns its settings and the arguments after "serve".
func strataUnit(script string) (map[string]string, []string) {
	var lines []string // logical lines: backslash continuations joined
	var cur strings.Builder
	for _, l := range strings.Split(script, "\n") {
		if strings.HasSuffix(l, "\\") {
			cur.WriteString(strings.TrimSuffix(l, "\\") + " ")
			continue
		}
		cur.WriteString(l)
		lines = append(lines, cur.String())
		cur.Reset()
	}
	setting := regexp.MustCompile(`^([A-Za-z]+)=(.*)$`)
	for i, l := range lines {
		f := strings.Fields(l)
		if len(f) < 2 || !strings.HasPrefix(f[0], "ExecStart=") || !strings.HasSuffix(f[0], "/strata") || f[1] != "serve" {
			continue
		}
		start := i
		for start > 0 && strings.TrimSpace(lines[start]) != "[Unit]" {
			start--
		}
		unit := map[string]string{}
		for _, u := range lines[start:] {
			u = strings.TrimSpace(u)
			if sm := setting.FindStringSubmatch(u); sm != nil {
				if unit[sm[1]] != "" {
					unit[sm[1]] += " "
				}
				unit[sm[1]] += sm[2]
			} else if u != "" && !strings.HasPrefix(u, "[") && !strings.HasPrefix(u, "#") {
				break // end of the unit file (heredoc terminator)
			}
		}
		return unit, f[2:]
	}
	return nil, nil
}

// strataServeFlags reads the flag names of `strata serve` from the source:
// the flags defined on fs in cmd/strata/serve.go plus every broker setting
// in broker/settings.go (each is a flag of the same name).
func strataServeFlags(repoRoot string) (map[string]bool, error) {
	flags := map[string]bool{}
	fset := token.NewFileSet()
	serve, err := parser.ParseFile(fset, filepath.Join(repoRoot, "cmd", "strata", "serve.go"), nil, 0)
	if err != nil {
		return nil, err
	}
	ast.Inspect(serve, func(n ast.Node) bool {
		call, ok := n.(*ast.CallExpr)
		if !ok {
			return true
		}
		sel, ok := call.Fun.(*ast.SelectorExpr)
		if !ok {
			return true
		}
		if id, ok := sel.X.(*ast.Ident); !ok || id.Name != "fs" {
			return true
		}
		for i, a := range call.Args {
			if i > 1 {
				break
			}
			if lit, ok := a.(*ast.BasicLit); ok && lit.Kind == token.STRING {
				if s, err := strconv.Unquote(lit.Value); err == nil {
					flags[s] = true
				}
				break
			}
		}
		return true
	})
	settings, err := parser.ParseFile(fset, filepath.Join(repoRoot, "broker", "settings.go"), nil, 0)
	if err != nil {
		return nil, err
	}
	n := 0
	for _, d := range settings.Decls {
		gd, ok := d.(*ast.GenDecl)
		if !ok || gd.Tok != token.VAR {
			continue
		}
		for _, spec := range gd.Specs {
			vs := spec.(*ast.ValueSpec)
			if len(vs.Names) != 1 || vs.Names[0].Name != "Settings" || len(vs.Values) != 1 {
				continue
			}
			ast.Inspect(vs.Values[0], func(x ast.Node) bool {
				cl, ok := x.(*ast.CompositeLit)
				if !ok || len(cl.Elts) < 3 {
					return true
				}
				if lit, ok := cl.Elts[0].(*ast.BasicLit); ok && lit.Kind == token.STRING {
					if s, err := strconv.Unquote(lit.Value); err == nil {
						flags[s] = true
						n++
					}
					return false
				}
				return true
			})
		}
	}
	if n == 0 || !flags["data-dir"] {
		return nil, fmt.Errorf("found no flags in %s (cmd/strata/serve.go, broker/settings.go changed shape?)", repoRoot)
	}
	return flags, nil
}
