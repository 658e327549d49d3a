// chat.cpp records what llama.cpp's llama_chat_apply_template writes for
// every template x conversation x add_ass of testdata/chat/cases.txt, so
// that package examples/llama/chat can be held against it (its tests read
// the output, testdata/chat/golden.txt).
//
// Usage: chat CASES > golden.txt
//
// Output: one line per case, "case T C A RC TEXT": template index T,
// conversation index C, add_ass A (0 or 1), llama.cpp's return code RC (the
// length, or negative for a template it does not know) and the text with
// \\, \n, \t, \r and other control bytes escaped (\xHH), so every case is
// one line.
#include "llama.h"

#include <cstdio>
#include <fstream>
#include <string>
#include <vector>

static std::string unescape(const std::string & s) {
    std::string out;
    for (size_t i = 0; i < s.size(); i++) {
        if (s[i] == '\\' && i + 1 < s.size()) {
            char c = s[++i];
            out += c == 'n' ? '\n' : c == 't' ? '\t' : c;
        } else {
            out += s[i];
        }
    }
    return out;
}

static std::string escape(const std::string & s) {
    std::string out;
    char buf[8];
    for (unsigned char c : s) {
        if (c == '\\') {
            out += "\\\\";
        } else if (c == '\n') {
            out += "\\n";
        } else if (c == '\t') {
            out += "\\t";
        } else if (c == '\r') {
            out += "\\r";
        } else if (c < 0x20 || c == 0x7f) {
            snprintf(buf, sizeof buf, "\\x%02x", c);
            out += buf;
        } else {
            out += (char) c;
        }
    }
    return out;
}

struct msg {
    std::string role, content;
};

int main(int argc, char ** argv) {
    if (argc != 2) {
        fprintf(stderr, "usage: %s CASES\n", argv[0]);
        return 2;
    }
    std::ifstream in(argv[1]);
    if (!in) {
        fprintf(stderr, "cannot open %s\n", argv[1]);
        return 1;
    }
    std::vector<std::string> templates;
    std::vector<std::vector<msg>> convs;
    std::string line;
    while (std::getline(in, line)) {
        if (line.rfind("template ", 0) == 0) {
            templates.push_back(unescape(line.substr(9)));
        } else if (line == "conv") {
            convs.emplace_back();
        } else if (line.rfind("msg ", 0) == 0) {
            std::string rest = line.substr(4);
            size_t sp = rest.find(' ');
            convs.back().push_back({rest.substr(0, sp), unescape(rest.substr(sp + 1))});
        }
    }
    for (size_t t = 0; t < templates.size(); t++) {
        for (size_t c = 0; c < convs.size(); c++) {
            std::vector<llama_chat_message> chat;
            for (auto & m : convs[c]) {
                chat.push_back({m.role.c_str(), m.content.c_str()});
            }
            for (int add = 0; add <= 1; add++) {
                std::vector<char> buf(4096);
                int32_t rc = llama_chat_apply_template(templates[t].c_str(), chat.data(), chat.size(), add, buf.data(), buf.size());
                if (rc > (int32_t) buf.size()) {
                    buf.resize(rc);
                    rc = llama_chat_apply_template(templates[t].c_str(), chat.data(), chat.size(), add, buf.data(), buf.size());
                }
                std::string text = rc > 0 ? std::string(buf.data(), rc) : "";
                printf("case %zu %zu %d %d %s\n", t, c, add, rc, escape(text).c_str());
            }
        }
    }
    return 0;
}
