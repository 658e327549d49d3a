package cli

import (
	"flag"
	"fmt"
	"io"
	"path/filepath"
	"strings"
	"text/tabwriter"

	"github.com/compresskv/compresskv/compresskv"
	"github.com/compresskv/compresskv/examples/llama/chat"
)

// ModelFlags are the flags that name a model, its tokenizer, its chat
// format and its profile, and the pooling kernel of the policies that pool.
type ModelFlags struct {
	Model     string // -model: a GGUF file or a llama2.c checkpoint
	Tokenizer string // -tokenizer: a llama2.c checkpoint's tokenizer; empty: byte-level (or the GGUF file's own)
	Chat      string // -chat: auto, on, off or a format (OpenChat)
	Profile   string // -profile: the model's profile, for the methods that need one
	Kernel    int    // -kernel: 0 takes the model's (Model.Kernel)
}

// ModelUsage is the -h text of -model.
const ModelUsage = "a GGUF file (weights, tokenizer and chat template in one: Llama 2/3, Mistral, SmolLM2, Qwen2/2.5/3, ...) or a llama2.c checkpoint (the project's byte-level model, " + DefaultModel + "; another needs -tokenizer)"

// TokenizerUsage is the -h text of -tokenizer.
const TokenizerUsage = "llama2.c tokenizer of a llama2.c -model (empty: the byte-level vocabulary of the project's model; a GGUF file holds its own)"

// ChatUsage is the -h text of -chat.
var ChatUsage = "prompts of a GGUF model: auto (in its chat template when the file has one this program writes), on (the same, an error when it has none), off (plain text), or a format: " + strings.Join(chatFormats(), ", ")

// AddModelFlags registers -model, -tokenizer, -chat, -profile and -kernel.
func AddModelFlags(fs *flag.FlagSet) *ModelFlags {
	f := &ModelFlags{}
	fs.StringVar(&f.Model, "model", DefaultModel, ModelUsage)
	fs.StringVar(&f.Tokenizer, "tokenizer", "", TokenizerUsage)
	fs.StringVar(&f.Chat, "chat", ChatAuto, ChatUsage)
	fs.StringVar(&f.Profile, "profile", DefaultProfile, "profile of -model, for the methods that need one ("+strings.Join(profileMethods(), ", ")+"); make one with go run ./examples/calibrate -model MODEL")
	fs.IntVar(&f.Kernel, "kernel", 0, fmt.Sprintf("pooling kernel of the methods that pool (0: %d for a byte-level model, the library's %d otherwise)", DefaultByteKernel, compresskv.DefaultKernel))
	return f
}

// DefaultByteKernel is the pooling kernel of byte-level models (Model.Kernel).
const DefaultByteKernel = 9

// Open opens the model the flags name (see OpenChat).
func (f *ModelFlags) Open() (*Model, error) { return OpenChat(f.Model, f.Tokenizer, f.Chat) }

// NeedleGridFlags are the flags of a grid of needle prompts: lengths x
// depths x needles per cell.
type NeedleGridFlags struct {
	Lengths *[]int // -lengths
	Depths  int    // -depths, evenly from 0 to 100%
	Needles int    // -needles per length and depth
}

// AddNeedleGridFlags registers -lengths, -depths and -needles (the
// project's model is trained up to 1,024 tokens).
func AddNeedleGridFlags(fs *flag.FlagSet) *NeedleGridFlags {
	g := &NeedleGridFlags{Lengths: Ints(fs, "lengths", "256,512,768,1024", "needle prompt lengths in tokens (the project's model is trained up to 1,024)")}
	fs.IntVar(&g.Depths, "depths", 11, "needle depths per length, evenly from 0 to 100%")
	fs.IntVar(&g.Needles, "needles", 3, "needles per length and depth")
	return g
}

// Check returns an error unless the grid has a depth and a needle.
func (g *NeedleGridFlags) Check() error {
	if g.Depths < 1 || g.Needles < 1 {
		return fmt.Errorf("-depths %d and -needles %d must be at least 1", g.Depths, g.Needles)
	}
	return nil
}

// ProfileFor returns the profile the flags name when one of methods needs
// it (nil otherwise), checked against the model: a missing file, or a
// profile measured on another model, is an error that says how to make one
// and which methods need none.
func (f *ModelFlags) ProfileFor(m *Model, methods ...compresskv.Method) (*compresskv.Profile, error) {
	var need []string
	for _, meth := range methods {
		if meth.NeedsProfile() {
			need = append(need, string(meth))
		}
	}
	if len(need) == 0 {
		return nil, nil
	}
	return f.LoadProfile(m, strings.Join(need, " and "))
}

// LoadProfile loads the profile the flags name for what (the methods, or
// the measurement, that read it), checked against the model.
func (f *ModelFlags) LoadProfile(m *Model, what string) (*compresskv.Profile, error) {
	make1 := "make one with " + CalibrateCommand(m, f.Tokenizer, f.Chat)
	none := "choose a method that needs none (" + strings.Join(noProfileMethods(), ", ") + ")"
	path := Path(f.Profile)
	prof, err := compresskv.LoadProfile(path)
	if err != nil {
		return nil, fmt.Errorf("%s needs a profile of the model: %w; %s, or %s", what, err, make1, none)
	}
	pm := prof.Model
	if pm.Layers != m.Layers || pm.QueryHeads != m.Heads || pm.KVHeads != m.KVHeads || pm.HeadDim != m.HeadDim() {
		return nil, fmt.Errorf("%s needs a profile of the model, and %s was measured on %q (%d layers, %d query heads over %d KV heads, head dimension %d), not on %s (%d, %d over %d, %d): %s, or %s",
			what, path, pm.Name, pm.Layers, pm.QueryHeads, pm.KVHeads, pm.HeadDim, m.Path, m.Layers, m.Heads, m.KVHeads, m.HeadDim(), make1, none)
	}
	return prof, nil
}

// CalibrateCommand returns the command that makes the model's profile and
// how to pass it on: "go run ./examples/calibrate -model M (it writes
// out/M.profile.json; pass -profile out/M.profile.json)", with the
// -tokenizer and -chat the model was opened with.
func CalibrateCommand(m *Model, tokenizer, chatMode string) string {
	cmd := "go run ./examples/calibrate -model " + m.Path
	if tokenizer != "" {
		cmd += " -tokenizer " + tokenizer
	}
	if chatMode != "" && chatMode != ChatAuto {
		cmd += " -chat " + chatMode
	}
	out := DefaultProfilePath(m.Path)
	return fmt.Sprintf("%s (it writes %s) and pass it with -profile %s", cmd, out, out)
}

// DefaultProfilePath is where examples/calibrate writes a model's profile
// unless told otherwise: out/<model file name without extension>.profile.json.
func DefaultProfilePath(model string) string {
	return filepath.Join("out", strings.TrimSuffix(filepath.Base(model), filepath.Ext(model))+".profile.json")
}

func chatFormats() []string {
	out := make([]string, len(chat.Templates))
	for i, t := range chat.Templates {
		out[i] = string(t)
	}
	return out
}

// MethodsUsage is the -h text of a flag that takes methods: every method
// of the library's table, those that need a profile marked.
func MethodsUsage() string {
	var out []string
	for _, m := range compresskv.Methods {
		s := string(m)
		if m.NeedsProfile() {
			s += " (needs -profile)"
		}
		out = append(out, s)
	}
	return strings.Join(out, ", ")
}

// ParseMethods parses a comma-separated list of methods (names or the
// aliases compresskv.ParseMethod accepts).
func ParseMethods(list string) ([]compresskv.Method, error) {
	var out []compresskv.Method
	for _, f := range strings.Split(list, ",") {
		if f = strings.TrimSpace(f); f == "" {
			continue
		}
		m, err := compresskv.ParseMethod(f)
		if err != nil {
			return nil, err
		}
		out = append(out, m)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("no methods in %q (want some of %s)", list, MethodsUsage())
	}
	return out, nil
}

// Methods registers a flag of comma-separated methods with default def;
// its -h text ends with every method of the library's table.
func Methods(fs *flag.FlagSet, name, def, usage string) *[]compresskv.Method {
	v := &listValue[compresskv.Method]{parse: ParseMethods}
	mustSet(v, def)
	fs.Var(v, name, usage+": some of "+MethodsUsage())
	return &v.list
}

// Ints registers a flag of comma-separated positive integers (lengths,
// budgets) with default def.
func Ints(fs *flag.FlagSet, name, def, usage string) *[]int {
	v := &listValue[int]{parse: ParseInts}
	mustSet(v, def)
	fs.Var(v, name, usage)
	return &v.list
}

// Counts registers a flag of comma-separated counts, zero allowed, with
// default def.
func Counts(fs *flag.FlagSet, name, def, usage string) *[]int {
	v := &listValue[int]{parse: ParseCounts}
	mustSet(v, def)
	fs.Var(v, name, usage)
	return &v.list
}

// listValue is a flag.Value holding a comma-separated list.
type listValue[T any] struct {
	text  string
	list  []T
	parse func(string) ([]T, error)
}

func (v *listValue[T]) String() string {
	if v == nil {
		return ""
	}
	return v.text
}

func (v *listValue[T]) Set(s string) error {
	list, err := v.parse(s)
	if err != nil {
		return err
	}
	v.text, v.list = s, list
	return nil
}

// mustSet sets a list flag's default, a constant of the program's.
func mustSet(v flag.Value, def string) {
	if def == "" {
		return
	}
	if err := v.Set(def); err != nil {
		panic(fmt.Sprintf("cli: default %q: %v", def, err))
	}
}

func profileMethods() []string {
	var out []string
	for _, m := range compresskv.Methods {
		if m.NeedsProfile() {
			out = append(out, string(m))
		}
	}
	return out
}

func noProfileMethods() []string {
	var out []string
	for _, m := range compresskv.Methods {
		if !m.NeedsProfile() {
			out = append(out, string(m))
		}
	}
	return out
}

// Grid is what a comparison of policies runs: methods at budgets, with the
// profile (when a method needs one) and the pooling kernel of the model.
type Grid struct {
	Methods []compresskv.Method
	Budgets []int
	Profile *compresskv.Profile // nil when no method needs one
	Kernel  int
	Rotary  *compresskv.Rotary // the model's (expected attention, and a Stream's default rule)
}

// Grid returns the comparison of methods at budgets on the model: it
// loads the profile when a method needs one (ProfileFor) and picks the
// kernel (Model.Kernel).
func (f *ModelFlags) Grid(m *Model, methods []compresskv.Method, budgets []int) (*Grid, error) {
	prof, err := f.ProfileFor(m, methods...)
	if err != nil {
		return nil, err
	}
	return &Grid{Methods: methods, Budgets: budgets, Profile: prof, Kernel: m.Kernel(f.Kernel), Rotary: m.Rotary()}, nil
}

// Policy returns method meth at average budget b, configured as the grid
// says.
func (g *Grid) Policy(meth compresskv.Method, b int) (*compresskv.Policy, error) {
	return compresskv.New(meth, compresskv.Config{Budget: b, Kernel: g.Kernel, Profile: g.Profile, Rotary: g.Rotary})
}

// Each calls f with every method and budget of the grid, methods outermost,
// and its policy; it stops at the first error.
func (g *Grid) Each(f func(meth compresskv.Method, bi int, pol *compresskv.Policy) error) error {
	for _, meth := range g.Methods {
		for bi, b := range g.Budgets {
			pol, err := g.Policy(meth, b)
			if err != nil {
				return err
			}
			if err := f(meth, bi, pol); err != nil {
				return err
			}
		}
	}
	return nil
}

// Table writes a table with a row per method and a column per budget,
// right-aligned, each cell as cell says; methods for which skip is true
// (nil: none) are left out.
func (g *Grid) Table(w io.Writer, skip func(compresskv.Method) bool, cell func(meth compresskv.Method, bi int) string) error {
	tw := NewTable(w, []string{"policy"}, g.Budgets)
	for _, meth := range g.Methods {
		if skip != nil && skip(meth) {
			continue
		}
		fmt.Fprintf(tw, "%s\t", meth)
		for bi := range g.Budgets {
			fmt.Fprintf(tw, "%s\t", cell(meth, bi))
		}
		fmt.Fprintln(tw)
	}
	return tw.Flush()
}

// NewTable returns a right-aligned table writing to w, its header written:
// the names, then one column per value of cols. Rows end with a tab, then
// a newline; Flush writes the table.
func NewTable[T any](w io.Writer, names []string, cols []T) *tabwriter.Writer {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	for _, n := range names {
		fmt.Fprintf(tw, "%s\t", n)
	}
	for _, c := range cols {
		fmt.Fprintf(tw, "%v\t", c)
	}
	fmt.Fprintln(tw)
	return tw
}
