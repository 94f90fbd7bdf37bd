// The lens on families whose blocks differ from Llama's, as torch.onnx.export writes them
// (test/model/torch-parity.ts): StableLM's LayerNorm and partial rotary, OLMo2's branch-only
// norms, Cohere's parallel blocks as two chained Adds.
import { torchParityTests } from './torch-parity.js';

torchParityTests(['stablelm', 'olmo2', 'cohere']);
