// The lens on families whose blocks differ from Llama's, as torch.onnx.export writes them
// (test/model/torch-parity.ts): StableLM's LayerNorm and partial rotary, Gemma 2/3's sandwich norms
// and softcaps, OLMo2's branch-only norms, Cohere's parallel blocks as two chained Adds.
import { torchParityTests } from './torch-parity.js';

torchParityTests(['stablelm', 'gemma2', 'gemma3_text', 'olmo2', 'cohere']);
