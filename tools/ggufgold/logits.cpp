// logits: llama.cpp's reference output for a GGUF model, in the format of
// the project's `go run ./examples/logits`:
//
//   prompt_ids id id ...
//   last_logits v v ...            (every vocabulary entry, %.6g)
//   step S id I top5 i:v i:v i:v i:v i:v   (S = 0 .. steps-1)
//
// Step S's token I is the argmax (ties to the lower id) of the logits that
// step S reads: step 0 reads the prompt's last logits, step S > 0 the logits
// after decoding step S-1's token. top5 lists those logits' five largest
// (value descending, then id ascending).
//
// Usage: logits -model M.gguf (-prompt P | -prompt-file F) -steps N [-bos=false] [-v] [-dump DIR]
//
// -dump DIR writes every F32 and F16 tensor the graphs compute (through the
// context's eval callback) to DIR: raw little-endian data in DIR/NNNNN.bin and
// one line per tensor in DIR/index.txt, "decode node name type ne0 ne1 ne2
// ne3 file" (decode 0 is the prompt, decode s the step s-1 token). With the
// callback set, llama.cpp computes node by node; the values are the same.
//
// The prompt is tokenized with llama_tokenize(add_special = !bos=false,
// parse_special = true); the context runs on 2 threads with flash attention
// disabled and the default (F16) KV cache. Build: see README.md.

#include "llama.h"

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

static void quiet_log(enum ggml_log_level, const char *, void *) {}

struct dumper {
    std::string dir;
    FILE * index = nullptr;
    int decode = 0;
    int node = 0;
    int files = 0;
};

static bool dump_cb(struct ggml_tensor * t, bool ask, void * ud) {
    dumper * d = (dumper *) ud;
    if (ask) return true;
    if ((t->type != GGML_TYPE_F32 && t->type != GGML_TYPE_F16) || !ggml_is_contiguous(t)) {
        d->node++;
        return true;
    }
    std::vector<uint8_t> buf(ggml_nbytes(t));
    ggml_backend_tensor_get(t, buf.data(), 0, buf.size());
    char name[64];
    snprintf(name, sizeof name, "%05d.bin", d->files++);
    FILE * f = fopen((d->dir + "/" + name).c_str(), "wb");
    if (f) {
        fwrite(buf.data(), 1, buf.size(), f);
        fclose(f);
    }
    fprintf(d->index, "%d %d %s %s %lld %lld %lld %lld %s\n", d->decode, d->node, t->name, ggml_type_name(t->type),
            (long long) t->ne[0], (long long) t->ne[1], (long long) t->ne[2], (long long) t->ne[3], name);
    d->node++;
    return true;
}

static void usage() {
    fprintf(stderr, "usage: logits -model M.gguf (-prompt P | -prompt-file F) -steps N [-bos=false] [-v]\n");
    exit(2);
}

static void print_top5(const float * l, int n) {
    std::vector<int> idx(n);
    for (int i = 0; i < n; i++) idx[i] = i;
    std::partial_sort(idx.begin(), idx.begin() + std::min(5, n), idx.end(), [l](int a, int b) {
        if (l[a] != l[b]) return l[a] > l[b];
        return a < b;
    });
    printf(" top5");
    for (int k = 0; k < std::min(5, n); k++) printf(" %d:%.6g", idx[k], l[idx[k]]);
}

static int argmax(const float * l, int n) {
    int best = 0;
    for (int i = 1; i < n; i++) {
        if (l[i] > l[best]) best = i;
    }
    return best;
}

int main(int argc, char ** argv) {
    std::string model_path, prompt;
    bool have_prompt = false, bos = true, verbose = false;
    int steps = -1;
    dumper dump;
    for (int i = 1; i < argc; i++) {
        std::string a = argv[i];
        if (a == "-model" && i + 1 < argc) {
            model_path = argv[++i];
        } else if (a == "-prompt" && i + 1 < argc) {
            prompt = argv[++i];
            have_prompt = true;
        } else if (a == "-prompt-file" && i + 1 < argc) {
            std::ifstream f(argv[++i], std::ios::binary);
            if (!f) { fprintf(stderr, "logits: cannot read %s\n", argv[i]); return 1; }
            std::stringstream ss;
            ss << f.rdbuf();
            prompt = ss.str();
            have_prompt = true;
        } else if (a == "-steps" && i + 1 < argc) {
            steps = atoi(argv[++i]);
        } else if (a == "-bos=false") {
            bos = false;
        } else if (a == "-bos=true" || a == "-bos") {
            bos = true;
        } else if (a == "-dump" && i + 1 < argc) {
            dump.dir = argv[++i];
        } else if (a == "-v") {
            verbose = true;
        } else {
            usage();
        }
    }
    if (model_path.empty() || !have_prompt || steps < 0) usage();

    if (!verbose) llama_log_set(quiet_log, nullptr);
    llama_backend_init();

    llama_model_params mp = llama_model_default_params();
    mp.n_gpu_layers = 0;
    llama_model * model = llama_model_load_from_file(model_path.c_str(), mp);
    if (!model) { fprintf(stderr, "logits: cannot load %s\n", model_path.c_str()); return 1; }
    const llama_vocab * vocab = llama_model_get_vocab(model);
    const int n_vocab = llama_vocab_n_tokens(vocab);

    int n = -llama_tokenize(vocab, prompt.data(), (int32_t) prompt.size(), nullptr, 0, bos, true);
    std::vector<llama_token> ids(std::max(n, 0));
    if (n <= 0 || llama_tokenize(vocab, prompt.data(), (int32_t) prompt.size(), ids.data(), n, bos, true) != n) {
        fprintf(stderr, "logits: tokenization failed or empty prompt\n");
        return 1;
    }

    llama_context_params cp = llama_context_default_params();
    cp.n_ctx = 512;
    cp.n_batch = 512;
    cp.n_ubatch = 512;
    cp.n_threads = 2;
    cp.n_threads_batch = 2;
    cp.flash_attn_type = LLAMA_FLASH_ATTN_TYPE_DISABLED;
    if ((int) ids.size() + steps > (int) cp.n_ctx) {
        fprintf(stderr, "logits: prompt (%zu tokens) plus steps exceed %u\n", ids.size(), cp.n_ctx);
        return 1;
    }
    if (!dump.dir.empty()) {
        dump.index = fopen((dump.dir + "/index.txt").c_str(), "w");
        if (!dump.index) { fprintf(stderr, "logits: cannot write %s/index.txt\n", dump.dir.c_str()); return 1; }
        cp.cb_eval = dump_cb;
        cp.cb_eval_user_data = &dump;
    }
    llama_context * ctx = llama_init_from_model(model, cp);
    if (!ctx) { fprintf(stderr, "logits: cannot create context\n"); return 1; }

    printf("prompt_ids");
    for (llama_token t : ids) printf(" %d", t);
    printf("\n");

    if (llama_decode(ctx, llama_batch_get_one(ids.data(), (int32_t) ids.size())) != 0) {
        fprintf(stderr, "logits: decode of the prompt failed\n");
        return 1;
    }
    const float * l = llama_get_logits_ith(ctx, -1);
    printf("last_logits");
    for (int i = 0; i < n_vocab; i++) printf(" %.6g", l[i]);
    printf("\n");

    for (int s = 0; s < steps; s++) {
        if (s > 0) {
            l = llama_get_logits_ith(ctx, -1);
        }
        llama_token next = argmax(l, n_vocab);
        printf("step %d id %d", s, next);
        print_top5(l, n_vocab);
        printf("\n");
        dump.decode = s + 1;
        dump.node = 0;
        if (s + 1 < steps && llama_decode(ctx, llama_batch_get_one(&next, 1)) != 0) {
            fprintf(stderr, "logits: decode of step %d failed\n", s);
            return 1;
        }
    }

    if (dump.index) fclose(dump.index);
    llama_free(ctx);
    llama_model_free(model);
    llama_backend_free();
    return 0;
}
