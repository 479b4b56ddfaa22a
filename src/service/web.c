/* web.c — finding the chat page's embedded files; see web.h. */
#include "service/web.h"

#include <string.h>

const web_asset *web_find(const char *url) {
    if (!strcmp(url, "/")) url = "/index.html";
    for (size_t i = 0; i < web_n_assets; i++)
        if (!strcmp(web_assets[i].path, url)) return &web_assets[i];
    return NULL;
}
