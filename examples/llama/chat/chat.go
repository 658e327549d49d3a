// Package chat formats a conversation into the prompt text an instruction
// model expects, recognising the model's template from the Jinja source a
// GGUF file stores in tokenizer.chat_template.
//
// It is not a Jinja engine. Like llama.cpp's llama_chat_apply_template, it
// recognises a template by the markers it contains (Detect, in llama.cpp's
// order, so that both read a template the same way) and writes the format
// of that family by hand. The families written are the ones of the models
// the runner serves: ChatML (Qwen2, Qwen2.5, Qwen3, SmolLM2), Llama 3
// (Llama 3, 3.1, 3.2), Llama 2 and Mistral ([INST]), Zephyr (TinyLlama),
// Phi-3 and Gemma. A template of another family is reported by name
// (ErrUnsupported), one of no known family is ErrUnknown; either way the
// caller can fall back to the raw prompt.
package chat

import (
	"errors"
	"fmt"
	"strings"
)

// Message is one turn of a conversation: Role is "system", "user" or
// "assistant"; Content is its text.
type Message struct {
	Role, Content string
}

// Template is a chat format, named as llama.cpp names it ("chatml",
// "llama3", "mistral-v7", ...).
type Template string

// The formats this package writes.
const (
	ChatML          Template = "chatml"
	Llama2          Template = "llama2"
	Llama2Sys       Template = "llama2-sys"
	Llama2SysBOS    Template = "llama2-sys-bos"
	Llama2SysStrip  Template = "llama2-sys-strip"
	MistralV1       Template = "mistral-v1"
	MistralV3       Template = "mistral-v3"
	MistralV3Tekken Template = "mistral-v3-tekken"
	MistralV7       Template = "mistral-v7"
	MistralV7Tekken Template = "mistral-v7-tekken"
	Phi3            Template = "phi3"
	Zephyr          Template = "zephyr"
	Gemma           Template = "gemma"
	Llama3          Template = "llama3"
)

// Templates lists the formats Apply writes.
var Templates = []Template{ChatML, Llama2, Llama2Sys, Llama2SysBOS, Llama2SysStrip,
	MistralV1, MistralV3, MistralV3Tekken, MistralV7, MistralV7Tekken, Phi3, Zephyr, Gemma, Llama3}

var (
	// ErrUnknown is returned for a template of no family Detect knows.
	ErrUnknown = errors.New("chat: unknown chat template")
	// ErrUnsupported is returned for a template of a known family whose
	// format this package does not write.
	ErrUnsupported = errors.New("chat: chat template family not supported")
	// ErrRole is returned for a message whose role is not system, user or
	// assistant.
	ErrRole = errors.New("chat: unknown role")
)

func supported(t Template) bool {
	for _, s := range Templates {
		if s == t {
			return true
		}
	}
	return false
}

// Detect names the format of a chat template: either a format's own name
// ("chatml", "llama3", ...) or the Jinja source of a model's template,
// recognised by its markers in the order llama.cpp checks them (so that a
// template with the markers of two families reads as the same family in
// both). It returns ErrUnsupported (with the family's name) for a family it
// recognises but does not write, and ErrUnknown otherwise.
func Detect(tmpl string) (Template, error) {
	if supported(Template(tmpl)) {
		return Template(tmpl), nil
	}
	has := func(s string) bool { return strings.Contains(tmpl, s) }
	other := func(family string) (Template, error) {
		return "", fmt.Errorf("%w: %s", ErrUnsupported, family)
	}
	switch {
	case has("<|im_start|>"):
		if has("<|im_sep|>") {
			return other("phi4")
		}
		if has("<end_of_utterance>") {
			return other("smolvlm")
		}
		return ChatML, nil
	case strings.HasPrefix(tmpl, "mistral") || has("[INST]"):
		if has("[SYSTEM_PROMPT]") {
			return MistralV7, nil
		}
		if has("' [INST] ' + system_message") || has("[AVAILABLE_TOOLS]") {
			switch {
			case has(" [INST]"):
				return MistralV1, nil
			case has(`"[INST]"`):
				return MistralV3Tekken, nil
			}
			return MistralV3, nil
		}
		switch {
		case has("content.strip()"):
			return Llama2SysStrip, nil
		case has("bos_token + '[INST]"):
			return Llama2SysBOS, nil
		case has("<<SYS>>"):
			return Llama2Sys, nil
		}
		return Llama2, nil
	case has("<|assistant|>") && has("<|end|>"):
		return Phi3, nil
	case has("[gMASK]<sop>"):
		return other("chatglm4")
	case has("<|assistant|>") && has("<|user|>"):
		if has("<|tool_declare|>") {
			return other("exaone-moe")
		}
		if has("</s>") {
			return other("falcon3")
		}
		return other("glmedge")
	case has("<|{{ item['role'] }}|>") && has("<|begin_of_image|>"):
		return other("glmedge")
	case has("<|user|>") && has("<|endoftext|>"):
		return Zephyr, nil
	case has("bos_token + message['role']"):
		return other("monarch")
	case has("<start_of_turn>"):
		return Gemma, nil
	case has(`'\n\nAssistant: ' + eos_token`):
		return other("orion")
	case has("GPT4 Correct "):
		return other("openchat")
	case has("USER: ") && has("ASSISTANT: "):
		return other("vicuna")
	case has("### Instruction:") && has("<|EOT|>"):
		return other("deepseek")
	case has("<|START_OF_TURN_TOKEN|>") && has("<|USER_TOKEN|>"):
		return other("command-r")
	case has("<|start_header_id|>") && has("<|end_header_id|>"):
		return Llama3, nil
	}
	return "", ErrUnknown
}

// Apply writes the conversation in format t, then, if addAssistant, the
// opening of the assistant's turn, so that the model's next tokens are its
// answer. The text is what llama.cpp's llama_chat_apply_template writes for
// the same format; it holds the format's special tokens as text, so encode
// it with special tokens parsed (and the beginning-of-sequence token added
// where the model's metadata says, as for any prompt).
func Apply(t Template, msgs []Message, addAssistant bool) (string, error) {
	for i, m := range msgs {
		switch m.Role {
		case "system", "user", "assistant":
		default:
			return "", fmt.Errorf("%w %q in message %d (want system, user or assistant)", ErrRole, m.Role, i)
		}
	}
	var b strings.Builder
	switch t {
	case ChatML:
		for _, m := range msgs {
			b.WriteString("<|im_start|>" + m.Role + "\n" + m.Content + "<|im_end|>\n")
		}
		if addAssistant {
			b.WriteString("<|im_start|>assistant\n")
		}
	case Llama3:
		for _, m := range msgs {
			b.WriteString("<|start_header_id|>" + m.Role + "<|end_header_id|>\n\n" + trim(m.Content) + "<|eot_id|>")
		}
		if addAssistant {
			b.WriteString("<|start_header_id|>assistant<|end_header_id|>\n\n")
		}
	case MistralV7, MistralV7Tekken:
		sp := ""
		if t == MistralV7 {
			sp = " "
		}
		for _, m := range msgs {
			switch m.Role {
			case "system":
				b.WriteString("[SYSTEM_PROMPT]" + sp + m.Content + "[/SYSTEM_PROMPT]")
			case "user":
				b.WriteString("[INST]" + sp + m.Content + "[/INST]")
			default:
				b.WriteString(sp + m.Content + "</s>")
			}
		}
	case MistralV1, MistralV3, MistralV3Tekken:
		lead, trail := "", " "
		if t == MistralV1 {
			lead = " "
		}
		if t == MistralV3Tekken {
			trail = ""
		}
		inside := false
		for _, m := range msgs {
			if !inside {
				b.WriteString(lead + "[INST]" + trail)
				inside = true
			}
			switch m.Role {
			case "system":
				b.WriteString(m.Content + "\n\n")
			case "user":
				b.WriteString(m.Content + lead + "[/INST]")
			default:
				c := m.Content
				if t == MistralV3 {
					c = trim(c)
				}
				b.WriteString(trail + c + "</s>")
				inside = false
			}
		}
	case Llama2, Llama2Sys, Llama2SysBOS, Llama2SysStrip:
		inside := true // the first [INST] follows the caller's BOS
		b.WriteString("[INST] ")
		for _, m := range msgs {
			c := m.Content
			if t == Llama2SysStrip {
				c = trim(c)
			}
			if !inside {
				inside = true
				if t == Llama2SysBOS {
					b.WriteString("<s>[INST] ")
				} else {
					b.WriteString("[INST] ")
				}
			}
			switch m.Role {
			case "system":
				if t == Llama2 {
					b.WriteString(c + "\n")
				} else {
					b.WriteString("<<SYS>>\n" + c + "\n<</SYS>>\n\n")
				}
			case "user":
				b.WriteString(c + " [/INST]")
			default:
				b.WriteString(c + "</s>")
				inside = false
			}
		}
	case Phi3:
		for _, m := range msgs {
			b.WriteString("<|" + m.Role + "|>\n" + m.Content + "<|end|>\n")
		}
		if addAssistant {
			b.WriteString("<|assistant|>\n")
		}
	case Zephyr:
		for _, m := range msgs {
			b.WriteString("<|" + m.Role + "|>\n" + m.Content + "<|endoftext|>\n")
		}
		if addAssistant {
			b.WriteString("<|assistant|>\n")
		}
	case Gemma:
		system := ""
		for _, m := range msgs {
			if m.Role == "system" {
				system += trim(m.Content)
				continue
			}
			role := m.Role
			if role == "assistant" {
				role = "model"
			}
			b.WriteString("<start_of_turn>" + role + "\n")
			if system != "" && role != "model" {
				b.WriteString(system + "\n\n")
				system = ""
			}
			b.WriteString(trim(m.Content) + "<end_of_turn>\n")
		}
		if addAssistant {
			b.WriteString("<start_of_turn>model\n")
		}
	default:
		if _, err := Detect(string(t)); err != nil {
			return "", err
		}
		return "", fmt.Errorf("%w: %q", ErrUnknown, string(t))
	}
	return b.String(), nil
}

// trim removes ASCII white space (C's isspace: space, \t, \n, \v, \f, \r)
// from both ends, as llama.cpp's formats do where they trim.
func trim(s string) string {
	return strings.Trim(s, " \t\n\v\f\r")
}
