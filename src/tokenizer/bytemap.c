/* bytemap.c — GPT-2's byte-level map, which byte-level BPE vocabularies are written in: each
 * byte becomes one printable code point (printable bytes stand for themselves, the 68 others
 * take 256, 257, ... in byte order). Used when a vocabulary is loaded (tokenizer.c) and when
 * text is encoded and decoded (bpe.c). */
#include "tokenizer/tokenizer_impl.h"

#include "base/utf8.h"

static int byte_is_printable(unsigned b) {
    return (b >= 0x21 && b <= 0x7E) || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE);
}

uint32_t tok_byte_to_cp(unsigned char b) {
    if (byte_is_printable(b)) return b;
    uint32_t n = 0; /* rank of b among the non-printable bytes */
    for (unsigned x = 0; x < b; x++) n += !byte_is_printable(x);
    return 256 + n;
}

int tok_cp_to_byte(uint32_t cp) {
    if (cp < 256) return byte_is_printable(cp) ? (int)cp : -1;
    if (cp >= 256 + 68) return -1; /* 68 bytes are non-printable */
    uint32_t n = cp - 256;
    for (unsigned x = 0; x < 256; x++)
        if (!byte_is_printable(x) && n-- == 0) return (int)x;
    return -1;
}


int tokenizer_byte_char(unsigned char b, char *out) {
    return utf8_encode(tok_byte_to_cp(b), out);
}
