// Built ONNX graphs go to a cache inside the checkout (not the home directory) unless CI says otherwise.
import path from 'node:path';
import { fileURLToPath } from 'node:url';

process.env.MGD_CACHE_DIR ??= path.join(path.dirname(fileURLToPath(import.meta.url)), '..', '.cache', 'mgd-test');
