// tokenize: records llama.cpp's tokenizer output for the vocab package's golden tests.
//
// It uses only the public llama.h API and loads the vocabulary alone (vocab_only).
//
//   tokenize VOCAB.gguf TESTS.inp ids ADD_SPECIAL PARSE_SPECIAL
//       one line per test in the test-tokenizer-0 .out format: " id id ..."
//       (llama_tokenize(text, add_special, parse_special); ADD_SPECIAL and PARSE_SPECIAL are 0 or 1)
//   tokenize VOCAB.gguf TESTS.inp detok
//       one line per test: three hex strings ("-" when empty), the text of
//       llama_detokenize(ids, remove_special, unparse_special) for
//       (ids of tokenize(text, 0, 0), 0, 0), (ids of tokenize(text, 1, 1), 0, 1)
//       and (ids of tokenize(text, 1, 1), 1, 0)
//   tokenize VOCAB.gguf - info
//       the vocabulary's facts: size, special ids, add_bos/add_eos, and every
//       token whose attributes are not plain NORMAL or that ends generation
//   tokenize VOCAB.gguf TEXT time REPS
//       tokenizes the whole file TEXT (add_special 0, parse_special 0) REPS times and prints
//       the number of tokens and the fastest and median seconds, for speed comparisons
//   tokenize VOCAB.gguf TESTS.inp split
//       one line per test: the byte lengths of the words the byte-level BPE
//       pre-tokenizer cuts the text into, before any merge
//
// The split mode is the one use of llama.cpp internals: llama.h does not expose
// pre-tokenization, so it takes the expressions from llm_tokenizer_bpe's constructor and
// runs unicode_regex_split, both exported by libllama, declared below as llama.cpp defines
// them at the recorded commit.
// TESTS.inp holds texts separated by lines "__ggml_vocab_test__", as llama.cpp's
// tests/test-tokenizer-0 reads them.

#include "llama.h"

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <algorithm>
#include <chrono>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

// From llama.cpp's src/llama-vocab.cpp and src/unicode.h (exported by libllama).
struct llama_vocab;
struct llm_tokenizer {
    llm_tokenizer() {}
    virtual ~llm_tokenizer() = default;
};
struct llm_tokenizer_bpe : llm_tokenizer {
    llm_tokenizer_bpe(const llama_vocab & vocab);
    std::vector<std::string> regex_exprs;
    bool byte_encode = true;
};
std::vector<std::string> unicode_regex_split(const std::string & text, const std::vector<std::string> & regex_exprs, bool byte_encode);

static void quiet_log(enum ggml_log_level level, const char * text, void * /*user*/) {
    if (level == GGML_LOG_LEVEL_ERROR) {
        fputs(text, stderr);
    }
}

static std::vector<std::string> read_tests(const char * path) {
    std::ifstream in(path, std::ios::binary);
    if (!in) {
        fprintf(stderr, "tokenize: cannot open %s\n", path);
        exit(1);
    }
    const std::string raw((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    const std::string sep = "\n__ggml_vocab_test__\n";
    std::vector<std::string> tests;
    size_t pos = 0;
    while (pos < raw.size()) {
        const size_t next = raw.find(sep, pos);
        if (next == std::string::npos) {
            tests.push_back(raw.substr(pos));
            break;
        }
        tests.push_back(raw.substr(pos, next - pos));
        pos = next + sep.size();
    }
    return tests;
}

static std::vector<llama_token> tokenize(const llama_vocab * vocab, const std::string & text, bool add_special, bool parse_special) {
    std::vector<llama_token> ids(text.size() + 8);
    int32_t n = llama_tokenize(vocab, text.data(), (int32_t) text.size(), ids.data(), (int32_t) ids.size(), add_special, parse_special);
    if (n < 0) {
        ids.resize(-n);
        n = llama_tokenize(vocab, text.data(), (int32_t) text.size(), ids.data(), (int32_t) ids.size(), add_special, parse_special);
    }
    ids.resize(n);
    return ids;
}

static std::string detokenize(const llama_vocab * vocab, const std::vector<llama_token> & ids, bool remove_special, bool unparse_special) {
    std::string text(ids.size() * 8 + 16, '\0');
    int32_t n = llama_detokenize(vocab, ids.data(), (int32_t) ids.size(), &text[0], (int32_t) text.size(), remove_special, unparse_special);
    if (n < 0) {
        text.resize(-n);
        n = llama_detokenize(vocab, ids.data(), (int32_t) ids.size(), &text[0], (int32_t) text.size(), remove_special, unparse_special);
    }
    text.resize(n);
    return text;
}

static void print_hex(const std::string & s) {
    if (s.empty()) {
        fputs("-", stdout);
        return;
    }
    for (unsigned char c : s) {
        printf("%02x", c);
    }
}

int main(int argc, char ** argv) {
    if (argc < 4) {
        fprintf(stderr, "usage: %s VOCAB.gguf TESTS.inp ids ADD_SPECIAL PARSE_SPECIAL | detok | split | time REPS | info\n", argv[0]);
        return 2;
    }
    const std::string mode = argv[3];

    llama_log_set(quiet_log, nullptr);
    llama_backend_init();
    llama_model_params mparams = llama_model_default_params();
    mparams.vocab_only = true;
    llama_model * model = llama_model_load_from_file(argv[1], mparams);
    if (model == nullptr) {
        fprintf(stderr, "tokenize: cannot load %s\n", argv[1]);
        return 1;
    }
    const llama_vocab * vocab = llama_model_get_vocab(model);

    if (mode == "info") {
        const int n = llama_vocab_n_tokens(vocab);
        printf("n_tokens %d\n", n);
        printf("bos %d\neos %d\neot %d\nsep %d\nnl %d\npad %d\n",
               llama_vocab_bos(vocab), llama_vocab_eos(vocab), llama_vocab_eot(vocab),
               llama_vocab_sep(vocab), llama_vocab_nl(vocab), llama_vocab_pad(vocab));
        printf("fim %d %d %d %d %d %d\n",
               llama_vocab_fim_pre(vocab), llama_vocab_fim_suf(vocab), llama_vocab_fim_mid(vocab),
               llama_vocab_fim_pad(vocab), llama_vocab_fim_rep(vocab), llama_vocab_fim_sep(vocab));
        printf("add_bos %d\nadd_eos %d\n", llama_vocab_get_add_bos(vocab) ? 1 : 0, llama_vocab_get_add_eos(vocab) ? 1 : 0);
        for (int id = 0; id < n; id++) {
            const int attr = (int) llama_vocab_get_attr(vocab, id);
            const bool eog = llama_vocab_is_eog(vocab, id);
            if (attr != LLAMA_TOKEN_ATTR_NORMAL || eog) {
                printf("token %d attr %d eog %d\n", id, attr, eog ? 1 : 0);
            }
        }
    } else if (mode == "ids") {
        if (argc < 6) {
            fprintf(stderr, "tokenize: ids needs ADD_SPECIAL and PARSE_SPECIAL\n");
            return 2;
        }
        const bool add_special = atoi(argv[4]) != 0;
        const bool parse_special = atoi(argv[5]) != 0;
        for (const std::string & text : read_tests(argv[2])) {
            for (llama_token id : tokenize(vocab, text, add_special, parse_special)) {
                printf(" %d", id);
            }
            printf("\n");
        }
    } else if (mode == "time") {
        std::ifstream in(argv[2], std::ios::binary);
        const std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
        const int reps = argc > 4 ? atoi(argv[4]) : 5;
        std::vector<double> secs;
        size_t n = 0;
        for (int r = 0; r < reps; r++) {
            const auto t0 = std::chrono::steady_clock::now();
            n = tokenize(vocab, text, false, false).size();
            secs.push_back(std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
        }
        std::sort(secs.begin(), secs.end());
        printf("bytes %zu tokens %zu min_s %.6f median_s %.6f\n", text.size(), n, secs[0], secs[secs.size() / 2]);
    } else if (mode == "split") {
        const llm_tokenizer_bpe bpe(*vocab);
        for (const std::string & text : read_tests(argv[2])) {
            for (const std::string & word : unicode_regex_split(text, bpe.regex_exprs, false)) {
                printf(" %zu", word.size());
            }
            printf("\n");
        }
    } else if (mode == "detok") {
        for (const std::string & text : read_tests(argv[2])) {
            const std::vector<llama_token> plain = tokenize(vocab, text, false, false);
            const std::vector<llama_token> special = tokenize(vocab, text, true, true);
            print_hex(detokenize(vocab, plain, false, false));
            fputs(" ", stdout);
            print_hex(detokenize(vocab, special, false, true));
            fputs(" ", stdout);
            print_hex(detokenize(vocab, special, true, false));
            fputs("\n", stdout);
        }
    } else {
        fprintf(stderr, "tokenize: unknown mode %s\n", mode.c_str());
        return 2;
    }

    llama_model_free(model);
    llama_backend_free();
    return 0;
}
