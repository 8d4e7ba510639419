/*
 * hfconfig.h — the parts of a Hugging Face model directory's JSON files
 * that quantd needs: config.json (architecture, hyperparameters,
 * rope_scaling, quantization_config), generation_config.json (bos/eos ids)
 * and the older quantize_config.json (AutoGPTQ) / quant_config.json
 * (AutoAWQ) that some checkpoints carry instead of quantization_config.
 *
 * Every value is validated (type, range); errors name the file and key.
 */
#ifndef QUANTD_HFCONFIG_H
#define QUANTD_HFCONFIG_H

#include <stdint.h>

typedef enum {
    QD_HF_QUANT_NONE = 0,
    QD_HF_QUANT_AWQ,  /* AutoAWQ, version "gemm" */
    QD_HF_QUANT_GPTQ, /* AutoGPTQ / GPTQModel */
} qd_hf_quant_method_t;

typedef struct {
    qd_hf_quant_method_t method;
    int bits;           /* 4 (the only width imported) */
    int group_size;     /* -1: one group over the whole input dim */
    int zero_point;     /* AWQ: asymmetric with zero points (must be 1) */
    int sym;            /* GPTQ */
    int desc_act;       /* GPTQ act-order */
    int gptq_v2;        /* checkpoint_format "gptq_v2": zeros stored as-is */
    char version[16];   /* AWQ: "gemm" */
} qd_hf_quant_t;

#define QD_HF_MAX_EOS 8

typedef struct {
    char architecture[64]; /* architectures[0], e.g. "LlamaForCausalLM" */
    char model_type[32];   /* "llama", "mistral", "qwen2", "qwen3" */
    int64_t hidden_size;
    int64_t n_layer;
    int64_t n_head;
    int64_t n_head_kv;     /* defaults to n_head */
    int64_t n_ff;
    int64_t max_pos;       /* max_position_embeddings */
    int64_t vocab_size;
    int64_t head_dim;      /* defaults to hidden_size / n_head */
    double rms_eps;
    double rope_theta;     /* defaults to 10000 */
    int tie_word_embeddings;
    /* rope_scaling (type "" when absent or null) */
    char rope_type[32];
    double rope_factor;
    double rope_low_freq_factor;
    double rope_high_freq_factor;
    int64_t rope_orig_max_pos;
    qd_hf_quant_t quant;
    /* generation_config.json, then config.json (-1 / 0 when absent) */
    int32_t bos_id;
    int32_t eos_ids[QD_HF_MAX_EOS];
    int n_eos;
} qd_hf_config_t;

/* Parse config.json text (plus optional generation_config.json text and a
 * separate quantization config text, either may be NULL). `what` labels
 * messages. 0, QD_EFORMAT or QD_EUNSUPPORTED (with qd_errmsg). */
int qd_hf_config_parse(const char *config_json, const char *gen_json,
                       const char *quant_json, qd_hf_config_t *out);
/* Read the files of a model directory and parse them. */
int qd_hf_config_load(const char *dir, qd_hf_config_t *out);

#endif /* QUANTD_HFCONFIG_H */
